test_that("CRAN packages become conda-forge r-* specs", {
  expect_equal(cran_spec(tr_cran_package("ggplot2")), "r-ggplot2")
  expect_equal(cran_spec(tr_cran_package("data.table", "1.14.8")), "r-data.table=1.14.8")
  expect_equal(cran_spec(tr_cran_package("Rcpp", "1.0")), "r-rcpp=1.0")
  expect_error(tr_cran_package("ggplot2!"), "not a CRAN package name", class = "terrarium_invalid")
  expect_error(tr_cran_package(""), class = "terrarium_invalid")
  expect_match(capture.output(print(tr_cran_package("dplyr", "1.1"))), "r-dplyr=1.1")
})

test_that("an R environment is registered with r-base and its CRAN packages, unlocked", {
  skip_without_server()
  env <- tr_r_environment("r-analysis",
    cran_packages = list("ggplot2", tr_cran_package("data.table", "1.14.8")),
    r_version = "4.3", conda_packages = "gdal>=3.6",
    environment_variables = c(R_LIBS_USER = "/dev/null"),
    description = "plots", tags = c(language = "r"),
    workspace = ws_alice
  )
  expect_s3_class(env, "tr_environment")
  expect_equal(env$version, "1")
  expect_true(attr(env, "created"))
  expect_equal(env$source$kind, "manual")
  expect_null(env$lock_hash)
  expect_equal(unlist(env$definition$conda$channels), "conda-forge")
  expect_setequal(unlist(env$definition$conda$dependencies),
    c("r-base=4.3", "r-ggplot2", "r-data.table=1.14.8", "gdal>=3.6"))
  expect_equal(env$definition$environment_variables, list(R_LIBS_USER = "/dev/null"))
  expect_equal(env$tags, list(language = "r"))
  expect_match(capture.output(print(env)), "r-ggplot2", all = FALSE)

  # The same packages in another order are the same content: the same version.
  again <- tr_r_environment("r-analysis",
    cran_packages = list(tr_cran_package("data.table", "1.14.8"), "ggplot2"),
    r_version = "4.3", conda_packages = "gdal>=3.6",
    environment_variables = c(R_LIBS_USER = "/dev/null"),
    workspace = ws_alice
  )
  expect_equal(again$version, "1")
  expect_false(attr(again, "created"))

  # One package more: the next version, any R.
  more <- tr_r_environment("r-analysis", c("ggplot2", "data.table", "dplyr"),
    workspace = ws_alice)
  expect_equal(more$version, "2")
  expect_true("r-base" %in% unlist(more$definition$conda$dependencies))
  expect_equal(tr_environment("r-analysis", workspace = ws_rita)$version, "2")
})

test_that("a malformed R environment is refused, naming the package", {
  skip_without_server()
  err <- expect_error(tr_r_environment("r-broken",
    list(tr_cran_package("ggplot2", ">>3")), workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err), "r-ggplot2=>>3", fixed = TRUE)
  expect_error(tr_r_environment("r-broken", "not a name", workspace = ws_alice),
    "not a CRAN package name", class = "terrarium_invalid")
  expect_error(tr_r_environment("r-broken", "ggplot2", environment_variables = c("x"),
    workspace = ws_alice), "must be named", class = "terrarium_invalid")
  expect_error(tr_environment("r-broken", workspace = ws_rita), class = "terrarium_not_found")
})
