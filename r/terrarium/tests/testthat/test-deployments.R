# A deployment's record, as `terrarium deploy` writes it (the process itself is not needed to
# read records).
record_deployment <- function(name, state) {
  env <- tr_environment("system-python", workspace = ws_alice)
  record <- list(
    name = name, environment = env$name, version = env$version, lock_hash = env$lock_hash,
    model_path = "/models/iris", model_hash = strrep("a", 64), entry = "score.py",
    workers = 2, url = "http://127.0.0.1:5001", host = "test-host", pid = NULL,
    state = state, reason = NULL, actor = "alice", started_at = "2026-01-01T00:00:00Z",
    stopped_at = NULL, log_path = NULL
  )
  tr_request(ws_alice, "PUT", paste0("/deployments/", name), body = record)
}

test_that("deployments are listed, filtered by state and read", {
  skip_without_server()
  expect_length(tr_deployments(workspace = ws_rita), 0)
  record_deployment("iris", "ready")
  record_deployment("old-iris", "stopped")

  listed <- tr_deployments(workspace = ws_rita)
  expect_s3_class(listed, "tr_deployment_list")
  frame <- as.data.frame(listed)
  expect_equal(frame$name, c("iris", "old-iris"))
  expect_equal(frame$environment, c("system-python:1", "system-python:1"))
  expect_match(capture.output(print(listed)), "2 deployments>", all = FALSE)

  ready <- tr_deployments(state = "ready", workspace = ws_rita)
  expect_equal(as.data.frame(ready)$name, "iris")
  expect_error(tr_deployments(state = "sleeping", workspace = ws_rita), class = "terrarium_invalid")

  iris <- tr_deployment("iris", workspace = ws_rita)
  expect_s3_class(iris, "tr_deployment")
  expect_equal(iris$url, "http://127.0.0.1:5001")
  expect_equal(iris$actor, "alice")
  expect_match(capture.output(print(iris))[[1]], "<terrarium deployment iris> ready")

  err <- expect_error(tr_deployment("nope", workspace = ws_rita), class = "terrarium_not_found")
  expect_match(conditionMessage(err), "nope")
})
