# A real team server for the tests: `terrarium server` on a free loopback port (it prints the
# address it bound), over a fresh SQLite workspace, with tokens made directly in its database
# as an operator would (`terrarium token create --db`). Everything is offline: nothing here
# resolves packages.

# The CLI binary: TERRARIUM_BIN, else target/HOST/debug/terrarium (cargo's folder for this
# machine's target) in the working directory or one of its parents (the repository's root
# when the tests run from a checkout).
find_terrarium_bin <- function() {
  bin <- Sys.getenv("TERRARIUM_BIN", "")
  if (startsWith(bin, "/")) {
    return(if (file.exists(bin)) bin else NULL)
  }
  dir <- normalizePath(getwd())
  repeat {
    candidate <- if (nzchar(bin)) {
      file.path(dir, bin)
    } else {
      Sys.glob(file.path(dir, "target", "*", "debug", "terrarium"))[1]
    }
    if (!is.na(candidate) && file.exists(candidate)) return(normalizePath(candidate))
    parent <- dirname(dir)
    if (parent == dir) return(NULL)
    dir <- parent
  }
}

terrarium_bin <- find_terrarium_bin()
if (is.null(terrarium_bin) && nzchar(Sys.getenv("CI"))) {
  stop("the terrarium binary was not found: set TERRARIUM_BIN (CI must run these tests)")
}

skip_without_server <- function() {
  if (is.null(terrarium_bin)) {
    skip("no terrarium binary: build it (cargo build -p terrarium) or set TERRARIUM_BIN")
  }
}

if (!is.null(terrarium_bin)) {
  # The package reads definition files through this binary too.
  withr::local_envvar(TERRARIUM_BIN = terrarium_bin, .local_envir = testthat::teardown_env())
  scratch <- normalizePath(tempfile("terrarium-r-tests-"), mustWork = FALSE)
  dir.create(scratch)
  db <- paste0("sqlite://", file.path(scratch, "workspace"))
  # The CLI's home, cache and config are the test's own: nothing of the machine's is read.
  cli_env <- c(
    "current",
    TERRARIUM_HOME = file.path(scratch, "home"),
    TERRARIUM_CACHE_DIR = file.path(scratch, "cache"),
    TERRARIUM_CONFIG = file.path(scratch, "no-config.toml"),
    TERRARIUM_WORKSPACE = "",
    TERRARIUM_TOKEN = "",
    TERRARIUM_USER = "r-tests"
  )

  # Run the CLI; fails the setup, with its output, when it fails.
  cli <- function(..., workspace = NULL, token = NULL) {
    args <- c(if (!is.null(workspace)) c("--workspace", workspace), ...)
    env <- cli_env
    if (!is.null(token)) env["TERRARIUM_TOKEN"] <- token
    result <- processx::run(terrarium_bin, args, env = env, error_on_status = FALSE,
      timeout = 60)
    if (result$status != 0) {
      stop(sprintf("terrarium %s failed (%d):\n%s%s", paste(args, collapse = " "),
        result$status, result$stdout, result$stderr))
    }
    result$stdout
  }

  bootstrap_token <- function(role, name) {
    jsonlite::fromJSON(cli("token", "create", "--db", db, "--role", role, "--name", name,
      "--json"))$token
  }
  tokens <- list(
    admin = bootstrap_token("admin", "root"),
    alice = bootstrap_token("contributor", "alice"),
    rita = bootstrap_token("reader", "rita")
  )

  server_log <- file.path(scratch, "server.log")
  server <- processx::process$new(
    terrarium_bin,
    c("server", "--db", db, "--listen", "127.0.0.1:0"),
    env = cli_env, stdout = NULL, stderr = server_log
  )
  # Wait for the line that names the bound address, with a deadline.
  server_url <- local({
    deadline <- Sys.time() + 60
    repeat {
      lines <- if (file.exists(server_log)) readLines(server_log, warn = FALSE) else character()
      found <- regmatches(lines, regexpr("(?<=listening on )http://\\S+", lines, perl = TRUE))
      if (length(found) > 0) break
      if (!server$is_alive() || Sys.time() > deadline) {
        stop("the server did not start:\n", paste(lines, collapse = "\n"))
      }
      Sys.sleep(0.02)
    }
    found[[1]]
  })

  withr::defer(
    {
      server$signal(tools::SIGTERM)
      server$wait(10000)
      server$kill()
      unlink(scratch, recursive = TRUE)
    },
    testthat::teardown_env()
  )

  ws_admin <- tr_workspace(server_url, tokens$admin)
  ws_alice <- tr_workspace(server_url, tokens$alice)
  ws_rita <- tr_workspace(server_url, tokens$rita)

  # A file in the scratch folder.
  write_file <- function(name, text) {
    path <- file.path(scratch, name)
    writeLines(text, path)
    path
  }

  # One real run through the CLI against the server, in a user-managed environment around this
  # machine's python3 (never resolved: it needs no index), so that runs and their logs exist.
  python3 <- Sys.which("python3")
  run_env_file <- write_file("system-python.yml", c(
    "name: system-python",
    "python:",
    "  user_managed: true",
    sprintf("  interpreter: %s", python3)
  ))
  cli("run", "--env", run_env_file, "--experiment", "r-client",
    "--", python3, "-c", "print('hello from the R tests')",
    workspace = server_url, token = tokens$alice
  )
}
