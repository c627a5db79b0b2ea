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

test_that("a run submitted from R runs here, is recorded on the server, and is waited for", {
  skip_without_server()
  env <- tr_environment("system-python", workspace = ws_alice)
  dir <- file.path(scratch, "submit-here")
  dir.create(dir, showWarnings = FALSE)
  writeLines("print('read from the working directory')", file.path(dir, "script.py"))
  run <- tr_submit_run(env, c(python3, "-c",
    "import runpy; print('submitted from R'); runpy.run_path('script.py')"),
    experiment = "r-submit", directory = dir, workspace = ws_alice)
  expect_s3_class(run, "tr_run")
  expect_equal(run$experiment, "r-submit")
  expect_equal(run$target, "local")
  expect_equal(run$actor, "alice")
  ended <- tr_run_wait(run, timeout = 120, workspace = ws_alice)
  expect_equal(ended$state, "completed")
  expect_equal(ended$exit_code, 0L)
  log <- tr_run_logs(ended, workspace = ws_rita)
  expect_match(log, "submitted from R")
  expect_match(log, "read from the working directory")

  # A command that fails: recorded as failed, with its exit code.
  failed <- tr_run_wait(tr_submit_run("system-python:1", c(python3, "-c", "raise SystemExit(3)"),
    experiment = "r-submit", workspace = ws_alice), timeout = 120, workspace = ws_alice)
  expect_equal(failed$state, "failed")
  expect_equal(failed$exit_code, 3L)
  expect_length(tr_runs(experiment = "r-submit", workspace = ws_rita), 2)

  # A definition file named relative to here, with the command run in another directory.
  withr::with_dir(scratch, {
    from_file <- tr_run_wait(tr_submit_run("system-python.yml", c(python3, "-c",
      "import os; print('in', os.path.basename(os.getcwd()))"), experiment = "r-submit",
      directory = dir, workspace = ws_alice), timeout = 120, workspace = ws_alice)
  })
  expect_equal(from_file$state, "completed")
  expect_equal(from_file$environment, "system-python")
  expect_match(tr_run_logs(from_file, workspace = ws_alice), "in submit-here")
})

test_that("a run that cannot start is a condition, and nothing is recorded", {
  skip_without_server()
  before <- length(tr_runs(workspace = ws_rita))
  err <- expect_error(
    tr_submit_run("no-such-environment", c("true"), workspace = ws_alice),
    class = "terrarium_not_found"
  )
  expect_match(conditionMessage(err), "no-such-environment")
  # A reader may not record runs.
  expect_error(
    tr_submit_run("system-python", c(python3, "-c", "pass"), workspace = ws_rita),
    class = "terrarium_error"
  )
  # A compute target the workspace does not have, before any job is submitted.
  err <- expect_error(
    tr_submit_run("system-python", c(python3, "-c", "pass"), target = "no-such-cluster",
      nodes = 2, workspace = ws_alice),
    class = "terrarium_invalid"
  )
  expect_match(conditionMessage(err), "no-such-cluster")
  expect_equal(length(tr_runs(workspace = ws_rita)), before)
  # Arguments the client can tell are wrong, before anything runs.
  expect_error(tr_submit_run("system-python", character(), workspace = ws_alice),
    class = "terrarium_invalid")
  expect_error(tr_submit_run("system-python", "true", nodes = 2, workspace = ws_alice),
    class = "terrarium_invalid")
  expect_error(tr_submit_run("system-python", "true", target = "hpc", nodes = 0.5,
    workspace = ws_alice), class = "terrarium_invalid")
  # Without the CLI, the condition says what is needed.
  withr::local_envvar(TERRARIUM_BIN = "", PATH = "/nonexistent")
  err <- expect_error(tr_submit_run("system-python", "true", workspace = ws_alice),
    class = "terrarium_unsupported")
  expect_match(conditionMessage(err), "needs the terrarium CLI")
})

test_that("a run submitted from R to Slurm is a job, followed to its end", {
  skip_without_server()
  conf <- Sys.getenv("TERRARIUM_TEST_SLURM_CONF")
  if (!nzchar(conf)) {
    if (nzchar(Sys.getenv("CI"))) stop("CI starts Slurm: TERRARIUM_TEST_SLURM_CONF must be set")
    skip("no Slurm: set TERRARIUM_TEST_SLURM_CONF (scripts/slurm.sh start DIR)")
  }
  cli("compute", "add", "r-hpc", "--kind", "slurm", "--set", paste0("conf=", conf),
    "--set", paste0("cache=", file.path(scratch, "slurm-cache")),
    "--set", paste0("logs=", file.path(scratch, "slurm-logs")),
    workspace = server_url, token = tokens$alice)
  run <- tr_submit_run("system-python", c(python3, "-c", "print('a job from R')"),
    target = "r-hpc", experiment = "r-slurm", time = "5m", workspace = ws_alice)
  expect_equal(run$target, "r-hpc")
  expect_equal(run$job$kind, "slurm")
  expect_true(run$state %in% c("queued", "running", "completed"))
  ended <- tr_run_wait(run, timeout = 300, workspace = ws_alice)
  expect_equal(ended$state, "completed")
  expect_equal(ended$exit_code, 0L)
  expect_match(tr_run_logs(ended, workspace = ws_alice), "a job from R")
})
