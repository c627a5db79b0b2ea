test_that("runs recorded by the CLI are listed, read and their logs fetched", {
  skip_without_server()
  runs <- tr_runs(workspace = ws_rita)
  expect_s3_class(runs, "tr_run_list")
  expect_length(runs, 1)
  frame <- as.data.frame(runs)
  expect_equal(frame$environment, "system-python:1")
  expect_equal(frame$state, "completed")
  expect_equal(frame$exit_code, 0L)
  expect_equal(frame$actor, "alice")
  expect_match(capture.output(print(runs)), "1 run>", all = FALSE)

  run <- tr_run(runs[[1]]$id, workspace = ws_rita)
  expect_s3_class(run, "tr_run")
  expect_equal(run$experiment, "r-client")
  expect_equal(run$target, "local")
  expect_match(capture.output(print(run))[[1]], paste0("<terrarium run ", run$id, "> completed"))

  log <- tr_run_logs(run, workspace = ws_rita)
  expect_s3_class(log, "tr_run_log")
  expect_match(log, "hello from the R tests")
  expect_equal(tr_run_logs(run$id, workspace = ws_rita), log)
  expect_match(capture.output(print(log)), "hello from the R tests", all = FALSE)

  expect_length(tr_runs(experiment = "r-client", workspace = ws_rita), 1)
  expect_length(tr_runs(experiment = "another", workspace = ws_rita), 0)
  env <- tr_environment("system-python", workspace = ws_rita)
  expect_length(tr_runs(environment = env, workspace = ws_rita), 1)
})

test_that("a run that does not exist is not found", {
  skip_without_server()
  err <- expect_error(tr_run("no-such-run", workspace = ws_rita), class = "terrarium_not_found")
  expect_match(conditionMessage(err), "no-such-run")
  expect_error(tr_run_logs("no-such-run", workspace = ws_rita), class = "terrarium_not_found")
})

test_that("submitting a run is not something the server's API offers", {
  err <- expect_error(
    tr_submit_run("demo", c("Rscript", "train.R"), target = "hpc",
      workspace = tr_workspace("http://127.0.0.1:9")),
    class = "terrarium_unsupported"
  )
  expect_s3_class(err, "terrarium_error")
  expect_match(conditionMessage(err), "records runs but does not start them")
})
