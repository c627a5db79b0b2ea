conda_file <- function(name, numpy = "1.26") {
  c(
    sprintf("name: %s", name),
    "channels:",
    "  - conda-forge",
    "dependencies:",
    "  - python=3.11",
    sprintf("  - numpy=%s", numpy),
    "  - pip:",
    "    - requests==2.31.0"
  )
}

# What `terrarium env validate FILE --json` prints for a conda environment.yml: the JSON the
# R client registers.
validated_json <- function(name, yaml_lines) {
  yml <- write_file(paste0(name, ".yml"), yaml_lines)
  write_file(paste0(name, ".json"), cli("env", "validate", yml, "--json"))
}

test_that("curated environments are listed and read by name, `/` and all", {
  skip_without_server()
  listed <- tr_environments(workspace = ws_rita)
  expect_s3_class(listed, "tr_environment_list")
  frame <- as.data.frame(listed)
  expect_true("curated/sklearn" %in% frame$name)
  expect_match(capture.output(print(listed)), "environments>", all = FALSE)

  sklearn <- tr_environment("curated/sklearn", workspace = ws_rita)
  expect_s3_class(sklearn, "tr_environment")
  expect_true(sklearn$curated)
  expect_true("latest" %in% unlist(sklearn$labels))
  expect_equal(tr_environments(search = "SKLEARN", workspace = ws_rita)[[1]]$name,
    "curated/sklearn")

  # Lists come a page at a time: small pages give the same items.
  withr::local_options(terrarium.page_size = 2)
  expect_equal(as.data.frame(tr_environments(workspace = ws_rita)), frame)
})

test_that("a definition file registers as versions: same content, same version", {
  skip_without_server()
  file <- validated_json("demo", conda_file("demo"))
  v1 <- tr_register_environment(file, workspace = ws_alice)
  expect_s3_class(v1, "tr_environment")
  expect_equal(v1$name, "demo")
  expect_equal(v1$version, "1")
  expect_true(attr(v1, "created"))
  expect_equal(v1$created_by, "alice")
  expect_equal(v1$source$format, "conda")
  expect_null(v1$lock_hash)
  expect_equal(unlist(v1$definition$conda$channels), "conda-forge")
  expect_true("numpy=1.26" %in% unlist(v1$definition$conda$dependencies))
  expect_equal(v1$definition$python$pip[[1]]$spec, "requests==2.31.0")

  again <- tr_register_environment(file, workspace = ws_alice)
  expect_equal(again$version, "1")
  expect_false(attr(again, "created"))

  v2 <- tr_register_environment(validated_json("demo", conda_file("demo", numpy = "1.25")),
    description = "numpy 1.25", tags = c(team = "vision"), workspace = ws_alice)
  expect_equal(v2$version, "2")
  expect_equal(v2$parent, "demo:1")
  expect_equal(v2$description, "numpy 1.25")
  expect_equal(v2$tags, list(team = "vision"))

  # A bare definition (no `definition` wrapper) registers too, under another name.
  bare <- write_file("bare.json", jsonlite::toJSON(v2$definition, auto_unbox = TRUE))
  copy <- tr_register_environment(bare, name = "demo-copy", workspace = ws_alice)
  expect_equal(copy$name, "demo-copy")
  expect_equal(copy$content_hash, v2$content_hash)

  # What `terrarium env show REF --json` prints registers too: its definition.
  shown_json <- write_file("shown.json",
    cli("env", "show", "demo:2", "--json", workspace = server_url, token = tokens$rita))
  from_show <- tr_register_environment(shown_json, name = "demo-from-show", version = "7",
    workspace = ws_alice)
  expect_equal(from_show$version, "7")
  expect_equal(from_show$content_hash, v2$content_hash)

  shown <- capture.output(print(v2))
  expect_match(shown[[1]], "<terrarium environment demo:2>")
  expect_match(shown, "not locked yet", all = FALSE)
  expect_match(shown, "numpy=1.25", all = FALSE)
  expect_match(shown, "team=vision", all = FALSE)
})

test_that("versions, labels and the latest version are read back", {
  skip_without_server()
  expect_equal(tr_environment("demo", workspace = ws_rita)$version, "2")
  expect_equal(tr_environment("demo", version = 1, workspace = ws_rita)$version, "1")
  expect_equal(tr_environment("demo", label = "latest", workspace = ws_rita)$version, "2")
  versions <- tr_environment_versions("demo", workspace = ws_rita)
  expect_equal(as.data.frame(versions)$version, c("1", "2"))
  expect_match(capture.output(print(versions))[[1]], "<terrarium: 2 versions of demo>", fixed = TRUE)
  expect_error(tr_environment("demo", version = "1", label = "latest", workspace = ws_rita),
    class = "terrarium_invalid")

  v1 <- tr_environment("demo", version = "1", workspace = ws_alice)
  labelled <- tr_label(v1, "production", workspace = ws_alice)
  expect_equal(labelled$version, "1")
  expect_true("production" %in% unlist(labelled$labels))
  expect_equal(tr_environment("demo", label = "production", workspace = ws_rita)$version, "1")

  # A name labels its latest version: the label moves.
  moved <- tr_label("demo", "production", workspace = ws_alice)
  expect_equal(moved$version, "2")
  expect_false("production" %in% unlist(tr_environment("demo", version = "1",
    workspace = ws_rita)$labels))

  tr_unlabel("demo", "production", workspace = ws_alice)
  expect_error(tr_environment("demo", label = "production", workspace = ws_rita),
    class = "terrarium_not_found")
})

test_that("what does not exist is a not-found condition with the server's message", {
  skip_without_server()
  err <- expect_error(tr_environment("no-such-env", workspace = ws_rita),
    class = "terrarium_not_found")
  expect_s3_class(err, "terrarium_error")
  expect_equal(err$status, 404L)
  expect_equal(err$code, "not_found")
  expect_match(conditionMessage(err), "no-such-env")
  expect_match(conditionMessage(err), "not found")
  expect_match(err$subject, "no-such-env")
  # The condition names the caller's call, as R's own errors do.
  expect_match(deparse(conditionCall(err)), "^tr_environment\\(")

  err <- expect_error(tr_environment("demo", version = "99", workspace = ws_rita),
    class = "terrarium_not_found")
  expect_match(conditionMessage(err), "demo:99")
  expect_error(tr_label("demo", "production", version = "99", workspace = ws_alice),
    class = "terrarium_not_found")
  expect_error(tr_unlabel("demo", "never-set", workspace = ws_alice),
    class = "terrarium_not_found")
  err <- expect_error(tr_environment("", workspace = ws_rita), class = "terrarium_invalid")
  expect_match(deparse(conditionCall(err)), "^tr_environment\\(")
})

test_that("an explicit version with other content is a conflict", {
  skip_without_server()
  first <- tr_register_environment(validated_json("pinned", conda_file("pinned")),
    version = "1.0", workspace = ws_alice)
  expect_equal(first$version, "1.0")
  changed <- validated_json("pinned", conda_file("pinned", numpy = "1.25"))
  err <- expect_error(tr_register_environment(changed, version = "1.0", workspace = ws_alice),
    class = "terrarium_conflict")
  expect_equal(err$status, 409L)
  expect_match(conditionMessage(err), "pinned:1.0")
})

test_that("a malformed definition is refused, naming the problem", {
  skip_without_server()
  bad_pip <- write_file("bad-pip.json", jsonlite::toJSON(list(
    name = "broken",
    python = list(version = "3.11", pip = list(list(spec = "torch ===")))
  ), auto_unbox = TRUE))
  err <- expect_error(tr_register_environment(bad_pip, workspace = ws_alice),
    class = "terrarium_invalid")
  expect_equal(err$status, 400L)
  expect_match(conditionMessage(err), "torch ===", fixed = TRUE)

  bad_conda <- write_file("bad-conda.json", jsonlite::toJSON(list(
    name = "broken",
    conda = list(channels = list("conda-forge"), dependencies = list("numpy >>= 1"))
  ), auto_unbox = TRUE))
  err <- expect_error(tr_register_environment(bad_conda, workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err), "numpy >>= 1", fixed = TRUE)

  nameless <- write_file("nameless.json", '{"python": {"version": "3.11"}}')
  err <- expect_error(tr_register_environment(nameless, workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err), "name")

  wrong_type <- write_file("wrong-type.json", '{"name": "broken", "conda": {"dependencies": "numpy"}}')
  err <- expect_error(tr_register_environment(wrong_type, workspace = ws_alice),
    class = "terrarium_invalid")
  # The server names the value and the type it wanted (not yet the field's path).
  expect_match(conditionMessage(err), '"numpy", expected a sequence', fixed = TRUE)

  expect_length(tr_environments(search = "broken", workspace = ws_rita), 0)
})

test_that("definition files in any format are read by the CLI, naming file, line and field", {
  skip_without_server()
  conda <- write_file("direct.yml", conda_file("direct"))
  direct <- tr_register_environment(conda, workspace = ws_alice)
  expect_equal(direct$name, "direct")
  expect_equal(direct$source$format, "conda")
  expect_equal(direct$source$file, normalizePath(conda))
  expect_equal(tr_register_environment(validated_json("direct", conda_file("direct")),
    workspace = ws_alice)$version, direct$version)

  bad <- write_file("bad.yml", c(
    "name: bad", "channels: [conda-forge]", "dependencies:", "  - python=3.11", "  - pip:",
    "    - torch ==="
  ))
  err <- expect_error(tr_register_environment(bad, workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err),
    "bad.yml:6: field `dependencies[1].pip`: invalid requirement `torch ===`", fixed = TRUE)
  expect_match(deparse(conditionCall(err)), "^tr_register_environment\\(")

  odd <- write_file("odd.yml", c("name: odd", "channels: [conda-forge]", "colour: green",
    "dependencies:", "  - python=3.11"))
  expect_warning(odd_env <- tr_register_environment(odd, workspace = ws_alice),
    "odd.yml:3: field `colour`: unknown key", class = "terrarium_warning")
  expect_equal(odd_env$version, "1")

  # A requirements file has no name: the server says so, and `name` gives one.
  requirements <- write_file("deps.txt", c("numpy==1.26.4", "requests>=2.31"))
  err <- expect_error(tr_register_environment(requirements, format = "requirements",
    workspace = ws_alice), class = "terrarium_invalid")
  expect_match(conditionMessage(err), "name")
  pip_only <- tr_register_environment(requirements, format = "requirements", name = "pip-only",
    workspace = ws_alice)
  expect_equal(pip_only$source$format, "requirements")
  expect_setequal(vapply(pip_only$definition$python$pip, function(r) r$spec, ""),
    c("numpy==1.26.4", "requests>=2.31"))

  err <- expect_error(tr_register_environment(requirements, format = "cobol", workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err), "cobol")
})

test_that("a Dockerfile's build context must already be in the workspace", {
  skip_without_server()
  context <- file.path(scratch, "web")
  dir.create(context)
  writeLines(c("FROM debian:bookworm", "COPY app.py /app.py"), file.path(context, "Dockerfile"))
  writeLines("print('hi')", file.path(context, "app.py"))
  dockerfile <- file.path(context, "Dockerfile")
  err <- expect_error(tr_register_environment(dockerfile, name = "web", workspace = ws_alice),
    class = "terrarium_invalid")
  expect_match(conditionMessage(err), "build context sha256:")
  expect_error(tr_environment("web", workspace = ws_rita), class = "terrarium_not_found")

  # The CLI uploads the context with its registration; then the same file is the same version.
  cli("env", "create", "-f", dockerfile, "--name", "web", "--no-lock",
    workspace = server_url, token = tokens$alice)
  web <- tr_register_environment(dockerfile, name = "web", workspace = ws_alice)
  expect_equal(web$version, "1")
  expect_false(attr(web, "created"))
})

test_that("files the client cannot read are refused before any request", {
  ws <- tr_workspace("http://127.0.0.1:9")
  yml <- tempfile(fileext = ".yml")
  writeLines(c("name: demo", "dependencies:", "  - numpy"), yml)
  withr::with_envvar(c(TERRARIUM_BIN = "", PATH = "/usr/bin:/bin"), {
    skip_if(nzchar(Sys.which("terrarium")), "a terrarium binary is on /usr/bin or /bin")
    err <- expect_error(tr_register_environment(yml, workspace = ws),
      class = "terrarium_unsupported_format")
  })
  expect_s3_class(err, "terrarium_invalid")
  expect_match(conditionMessage(err), basename(yml), fixed = TRUE)
  expect_match(conditionMessage(err), "TERRARIUM_BIN", fixed = TRUE)
  withr::with_envvar(c(TERRARIUM_BIN = "/no/such/terrarium"), {
    expect_error(tr_register_environment(yml, workspace = ws), "/no/such/terrarium",
      class = "terrarium_invalid")
  })

  broken <- tempfile(fileext = ".json")
  writeLines('{"name": "demo",', broken)
  err <- expect_error(tr_register_environment(broken, workspace = ws), class = "terrarium_invalid")
  expect_match(conditionMessage(err), "not valid JSON")

  list_json <- tempfile(fileext = ".json")
  writeLines('["numpy"]', list_json)
  expect_error(tr_register_environment(list_json, workspace = ws), "JSON object",
    class = "terrarium_invalid")
  expect_error(tr_register_environment(tempfile(), workspace = ws), "no such file",
    class = "terrarium_invalid")
})

test_that("roles are enforced: readers read, curated names are the server's", {
  skip_without_server()
  file <- validated_json("by-reader", conda_file("by-reader"))
  err <- expect_error(tr_register_environment(file, workspace = ws_rita),
    class = "terrarium_forbidden")
  expect_equal(err$status, 403L)
  expect_match(conditionMessage(err), "contributor")
  expect_error(tr_label("demo", "production", workspace = ws_rita), class = "terrarium_forbidden")

  err <- expect_error(tr_register_environment(file, name = "curated/mine", workspace = ws_alice),
    class = "terrarium_curated")
  expect_s3_class(err, "terrarium_forbidden")
})
