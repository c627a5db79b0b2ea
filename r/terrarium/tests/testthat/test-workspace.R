test_that("a workspace needs a server address and never shows its token", {
  expect_error(tr_workspace(""), class = "terrarium_invalid")
  expect_error(tr_workspace("/srv/workspace"), "not a server address", class = "terrarium_invalid")
  expect_error(tr_workspace("postgres://db/terrarium"), class = "terrarium_invalid")

  ws <- tr_workspace("http://127.0.0.1:1/", token = "s3cret-token")
  expect_equal(ws$url, "http://127.0.0.1:1")
  shown <- c(capture.output(print(ws)), capture.output(str(ws)), deparse(ws))
  expect_false(any(grepl("s3cret-token", shown, fixed = TRUE)))
  expect_match(capture.output(print(ws)), "token: set", all = FALSE)

  withr::local_envvar(TERRARIUM_WORKSPACE = "https://terrarium.example:8765", TERRARIUM_TOKEN = "")
  ws <- tr_workspace()
  expect_equal(ws$url, "https://terrarium.example:8765")
  expect_match(capture.output(print(ws)), "token: none", all = FALSE)
})

test_that("the token decides who the caller is, and a missing one is refused", {
  skip_without_server()
  expect_equal(tr_whoami(ws_alice)[c("actor", "role")], list(actor = "alice", role = "contributor"))
  expect_equal(tr_whoami(ws_rita)$role, "reader")

  err <- expect_error(tr_environments(workspace = tr_workspace(server_url, token = "")),
    class = "terrarium_unauthorized")
  expect_equal(err$status, 401L)
  expect_equal(err$code, "unauthorized")
  expect_match(conditionMessage(err), "TERRARIUM_TOKEN")
  expect_error(tr_environments(workspace = tr_workspace(server_url, "not-a-token")),
    class = "terrarium_unauthorized")

  # The default workspace comes from the environment variables.
  withr::local_envvar(TERRARIUM_WORKSPACE = server_url, TERRARIUM_TOKEN = tokens$rita)
  expect_equal(tr_whoami()$actor, "rita")
})

test_that("an address where no server answers is a transport error", {
  # Port 9 (discard) has no listener on a test machine: the connection is refused.
  ws <- tr_workspace("http://127.0.0.1:9", token = "x")
  err <- expect_error(tr_environments(workspace = ws), class = "terrarium_transport_error")
  expect_match(conditionMessage(err), "cannot reach the workspace server at http://127.0.0.1:9")
  expect_true(is.na(err$status))
})
