# Runs: what the server records of runs started by clients (`terrarium run`), and their logs.

as_tr_run <- function(record) structure(record, class = "tr_run")

run_id <- function(run, call = sys.call(sys.parent())) {
  force(call)
  if (inherits(run, "tr_run")) return(run$id)
  check_string(run, "run", call = call)
  run
}

#' Runs recorded in the workspace
#'
#' @param experiment Only runs of this experiment.
#' @param environment Only runs in this environment: a name or a `tr_environment`.
#' @param workspace A [tr_workspace()].
#' @return A `tr_run_list`, newest first; `as.data.frame()` gives one row per run.
#' @export
tr_runs <- function(experiment = NULL, environment = NULL, workspace = tr_workspace()) {
  if (inherits(environment, "tr_environment")) environment <- environment$name
  records <- tr_all(workspace, "/runs", list(experiment = experiment, environment = environment))
  structure(lapply(records, as_tr_run), class = "tr_run_list")
}

#' One run
#'
#' @param id The run's id.
#' @param workspace A [tr_workspace()].
#' @return A `tr_run`: a list with `id`, `experiment`, `environment`, `version`,
#'   `lock_hash`, `command`, `cwd`, `target`, `actor`, `state` (`queued`, `running`,
#'   `completed`, `failed`, `cancelled`, `timed_out`, `node_failed`, `lost`), `started_at`,
#'   `finished_at`, `exit_code`, and for a job on a compute target `job`.
#' @export
tr_run <- function(id, workspace = tr_workspace()) {
  check_string(id, "id")
  as_tr_run(tr_json(tr_request(workspace, "GET", paste0("/runs/", segment(id)))))
}

#' A run's output
#'
#' The log the run's client uploaded, with the values of secrets replaced by `***`.
#'
#' @param run A `tr_run` or a run id.
#' @param workspace A [tr_workspace()].
#' @return The log as one string, of class `tr_run_log` (printed as it is).
#' @export
tr_run_logs <- function(run, workspace = tr_workspace()) {
  id <- run_id(run)
  resp <- tr_request(workspace, "GET", paste0("/runs/", segment(id), "/log"))
  structure(httr2::resp_body_string(resp, encoding = "UTF-8"), class = "tr_run_log", run = id)
}

#' Submit a run
#'
#' Starts `command` in an environment and records the run in the workspace, as
#' `terrarium run` does: on `"local"` the command runs here, in the background (the
#' environment is built first when it is not yet); on `"container"` in the environment's
#' image; on any compute target of the workspace (Slurm, Ray, Spark, Kubernetes) as a job.
#' The team server records runs but does not start them, so this drives the terrarium CLI
#' (`TERRARIUM_BIN`, else `terrarium` on `PATH`) against the workspace with its token: the
#' command runs, or the job is submitted, from this machine with the user's own rights on the
#' cluster, and the server records it.
#'
#' @param environment A `tr_environment`, a reference (`"NAME"`, `"NAME:VERSION"`,
#'   `"NAME@LABEL"`), or a definition file (registered first if its content is new).
#' @param command The program and its arguments, a character vector.
#' @param target `"local"`, `"container"` or the name of a compute target of the workspace.
#' @param experiment The experiment the run is recorded under.
#' @param nodes,cpus,gpus On a compute target: how many nodes, and CPUs and GPUs per task.
#' @param memory,time On a compute target: memory per node (`"8G"`) and the time limit
#'   (`"2h"`, `"90m"`).
#' @param directory The command's working directory.
#' @param workspace A [tr_workspace()].
#' @return The `tr_run` as recorded once the run has started (local) or its job was submitted;
#'   [tr_run_wait()] waits for its end.
#' @examples
#' \dontrun{
#' env <- tr_environment("sklearn-example")
#' run <- tr_submit_run(env, c("python", "train.py"), target = "hpc", nodes = 2)
#' run <- tr_run_wait(run)
#' cat(tr_run_logs(run))
#' }
#' @export
tr_submit_run <- function(environment, command, target = "local", experiment = "default",
                          nodes = NULL, cpus = NULL, gpus = NULL, memory = NULL, time = NULL,
                          directory = ".", workspace = tr_workspace()) {
  call <- sys.call()
  reference <- if (inherits(environment, "tr_environment")) {
    sprintf("%s:%s", environment$name, environment$version)
  } else {
    check_string(environment, "environment", call = call)
    # A definition file is named from here, not from `directory`, where the CLI runs.
    if (file.exists(environment)) normalizePath(environment) else environment
  }
  if (!is.character(command) || length(command) == 0 || anyNA(command) ||
    !nzchar(command[[1]])) {
    tr_abort_invalid("`command` must be a character vector: the program, then its arguments",
      call = call)
  }
  check_string(target, "target", call = call)
  check_string(experiment, "experiment", call = call)
  if (!is.character(directory) || length(directory) != 1 || !dir.exists(directory)) {
    tr_abort_invalid(sprintf("`directory` must be an existing folder"), call = call)
  }
  count <- function(value, name) {
    if (is.null(value)) return(NULL)
    if (!is.numeric(value) || length(value) != 1 || is.na(value) || value < 1 ||
      value != round(value)) {
      tr_abort_invalid(sprintf("`%s` must be a whole number, 1 or more", name), call = call)
    }
    c(paste0("--", name), format(value, scientific = FALSE))
  }
  text <- function(value, name) {
    if (is.null(value)) return(NULL)
    check_string(value, name, call = call)
    c(paste0("--", name), value)
  }
  resources <- c(count(nodes, "nodes"), count(cpus, "cpus"), count(gpus, "gpus"),
    text(memory, "memory"), text(time, "time"))
  here <- target %in% c("local", "container")
  if (here && length(resources) > 0) {
    tr_abort_invalid(paste(
      "nodes, cpus, gpus, memory and time are for compute targets;",
      sprintf("`%s` runs on this machine", target)
    ), call = call)
  }
  bin <- find_binary(call)
  if (is.null(bin)) {
    stop(tr_condition(paste(
      "submitting a run needs the terrarium CLI (set TERRARIUM_BIN, or put `terrarium` on",
      "PATH): it starts the run, or submits the job, from this machine, and the server records it"
    ), "terrarium_unsupported", code = "unsupported", call = call))
  }
  options <- c("--env", reference, "--experiment", experiment, "--target", target, resources)
  directory <- normalizePath(directory)
  id <- with_cli_env(workspace, if (here) {
    start_local_run(bin, workspace, options, command, directory, call)
  } else {
    out <- run_cli(bin, c("--workspace", workspace$url, "run", options, "--detach", "--",
      command), directory, "run", call)
    # `--detach` prints the run's id last.
    out <- out[nzchar(out)]
    if (length(out) == 0) {
      stop(tr_condition("terrarium run --detach printed no run id", call = call))
    }
    out[[length(out)]]
  })
  tr_run(id, workspace = workspace)
}

#' Wait for a run to end
#'
#' Follows the run with the terrarium CLI's `runs wait`, from this machine: a job through its
#' engine, a run on this machine through its process (one whose process is gone without
#' recording its end is recorded as lost). Without the CLI, the workspace is read until the
#' run's client has recorded its end.
#'
#' @param run A `tr_run` or a run id.
#' @param timeout Seconds to wait at most; `Inf` waits for as long as it runs.
#' @param workspace A [tr_workspace()].
#' @return The `tr_run` as it ended; a `terrarium_timeout` condition after `timeout` seconds.
#' @export
tr_run_wait <- function(run, timeout = Inf, workspace = tr_workspace()) {
  call <- sys.call()
  id <- run_id(run)
  if (!is.numeric(timeout) || length(timeout) != 1 || is.na(timeout) || timeout <= 0) {
    tr_abort_invalid("`timeout` must be a number of seconds above 0", call = call)
  }
  deadline <- Sys.time() + min(timeout, 1e9)
  final <- c("completed", "failed", "cancelled", "timed_out", "node_failed", "lost")
  record <- tr_run(id, workspace = workspace)
  bin <- if (!(record$state %in% final)) find_binary(call)
  if (!is.null(bin)) {
    # The CLI's exit code is the run's, so only a failure of its own (a JSON error line) is
    # an error here.
    with_cli_env(workspace, run_cli(bin, c("--workspace", workspace$url, "runs", "wait", id),
      getwd(), "runs wait", call, timeout = if (is.finite(timeout)) ceiling(timeout) else 0,
      run_exit_ok = TRUE))
    record <- tr_run(id, workspace = workspace)
  }
  delay <- 0.1
  while (!(record$state %in% final)) {
    if (Sys.time() > deadline) {
      stop(tr_condition(sprintf("run %s has not ended after %s s (it is %s)", id, timeout,
        record$state), "terrarium_timeout", code = "timeout", call = call))
    }
    Sys.sleep(delay)
    delay <- min(delay * 1.5, 2)
    record <- tr_run(id, workspace = workspace)
  }
  record
}

# Evaluate `code` with the workspace's token in TERRARIUM_TOKEN (never on a command line,
# where `ps` shows it) and the CLI's errors as JSON, then put both back.
with_cli_env <- function(workspace, code) {
  names <- c("TERRARIUM_TOKEN", "TERRARIUM_ERRORS")
  old <- Sys.getenv(names, unset = NA, names = TRUE)
  on.exit(for (name in names) {
    if (is.na(old[[name]])) {
      Sys.unsetenv(name)
    } else {
      value <- list(old[[name]])
      names(value) <- name
      do.call(Sys.setenv, value)
    }
  })
  Sys.setenv(TERRARIUM_ERRORS = "json")
  token <- workspace$secret$token
  if (is.null(token)) Sys.unsetenv("TERRARIUM_TOKEN") else Sys.setenv(TERRARIUM_TOKEN = token)
  force(code)
}

# Run the CLI in `directory` and return its stdout lines; its error as a condition.
run_cli <- function(bin, args, directory, what, call, timeout = 0, run_exit_ok = FALSE) {
  errors <- tempfile("terrarium-cli-")
  on.exit(unlink(errors), add = TRUE)
  owd <- setwd(directory)
  on.exit(setwd(owd), add = TRUE)
  out <- suppressWarnings(system2(bin, shQuote(args), stdout = TRUE, stderr = errors,
    timeout = timeout))
  status <- attr(out, "status") %||% 0L
  if (status != 0) {
    lines <- readLines(errors, warn = FALSE)
    condition <- cli_condition(status, lines, what, call)
    if (!(run_exit_ok && !is.null(attr(condition, "not_described")))) stop(condition)
  }
  out
}

# Start `terrarium run` in the background (its own process: it outlives an interrupt of this
# session) and return the run's id once it is recorded: the CLI writes it to `--id-file`
# before the command starts. A run that fails before that is an error here.
start_local_run <- function(bin, workspace, options, command, directory, call) {
  scratch <- tempfile("terrarium-run-")
  dir.create(scratch)
  id_file <- file.path(scratch, "run-id")
  output <- file.path(scratch, "output.log")
  status_file <- file.path(scratch, "status")
  pid_file <- file.path(scratch, "pid")
  script <- file.path(scratch, "run.sh")
  argv <- c(bin, "--workspace", workspace$url, "run", "--id-file", id_file, options, "--",
    command)
  # The status is written whatever happens, renamed into place whole.
  writeLines(c(
    sprintf("echo $$ >%s", shQuote(pid_file)),
    sprintf("if cd %s; then", shQuote(directory)),
    sprintf("  %s </dev/null >%s 2>&1", paste(shQuote(argv), collapse = " "), shQuote(output)),
    "  status=$?",
    "else",
    sprintf("  echo 'cannot enter the directory' >%s; status=1", shQuote(output)),
    "fi",
    sprintf("echo $status >%s.tmp && mv %s.tmp %s", shQuote(status_file), shQuote(status_file),
      shQuote(status_file))
  ), script)
  system2("/bin/sh", shQuote(script), wait = FALSE, stdout = FALSE, stderr = FALSE)
  repeat {
    # Written whole (renamed into place) by `terrarium run`.
    if (file.exists(id_file)) {
      id <- trimws(readLines(id_file, warn = FALSE))
      if (length(id) == 1 && nzchar(id)) return(id)
    }
    ended <- file.exists(status_file)
    # A shell that died without a word (killed, or never started) leaves no status.
    gone <- !ended && file.exists(pid_file) && {
      pid <- suppressWarnings(as.integer(readLines(pid_file, warn = FALSE)[1]))
      !is.na(pid) && !tools::pskill(pid, 0L)
    }
    if ((ended || gone) && !file.exists(id_file)) {
      status <- if (ended) suppressWarnings(as.integer(readLines(status_file, warn = FALSE)[1]))
      if (is.null(status) || is.na(status)) status <- 1L
      lines <- if (file.exists(output)) readLines(output, warn = FALSE) else character()
      unlink(scratch, recursive = TRUE)
      stop(cli_condition(status, lines, "run", call))
    }
    Sys.sleep(0.05)
  }
}

# The condition for a CLI run that exited with `status`: from its last line, the JSON error
# TERRARIUM_ERRORS=json makes it write (the message, its causes and the error's code), else
# its last lines (and the condition carries `not_described`).
cli_condition <- function(status, lines, what, call) {
  lines <- lines[nzchar(trimws(lines))]
  body <- if (length(lines) > 0) {
    tryCatch(jsonlite::parse_json(lines[[length(lines)]])$error, error = function(e) NULL)
  }
  if (is.null(body) || is.null(body$message)) {
    tail_lines <- utils::tail(lines, 20)
    condition <- tr_condition(
      paste(c(sprintf("terrarium %s failed with exit code %d", what, status), tail_lines),
        collapse = "\n"),
      call = call
    )
    attr(condition, "not_described") <- TRUE
    return(condition)
  }
  message <- paste(c(body$message, unlist(body$causes)), collapse = ": ")
  code <- body$code %||% NA_character_
  classes <- if (!is.na(code)) paste0("terrarium_", code) else character()
  tr_condition(message, classes, code = code, call = call)
}

#' @export
format.tr_run <- function(x, ...) {
  job <- x$job
  c(
    sprintf("<terrarium run %s> %s", x$id, x$state %||% ""),
    field_lines(
      experiment = x$experiment,
      environment = sprintf("%s:%s", x$environment, x$version),
      command = paste(unlist(x$command), collapse = " "),
      target = x$target,
      actor = x$actor,
      started = x$started_at,
      finished = x$finished_at,
      exit_code = if (!is.null(x$exit_code)) as.character(x$exit_code),
      job = if (!is.null(job)) sprintf("%s job %s", job$kind, job$job_id),
      nodes = job$node_list,
      reason = job$reason
    )
  )
}

#' @export
print.tr_run <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

#' @export
print.tr_run_log <- function(x, ...) {
  cat(x)
  if (nzchar(x) && !endsWith(x, "\n")) cat("\n")
  invisible(x)
}

#' @export
as.data.frame.tr_run_list <- function(x, ...) {
  text <- function(value) if (is.null(value)) NA_character_ else as.character(value)
  data.frame(
    id = vapply(x, function(r) r$id, ""),
    experiment = vapply(x, function(r) r$experiment, ""),
    environment = vapply(x, function(r) sprintf("%s:%s", r$environment, r$version), ""),
    state = vapply(x, function(r) text(r$state), ""),
    target = vapply(x, function(r) r$target, ""),
    exit_code = vapply(x, function(r) if (is.null(r$exit_code)) NA_integer_ else as.integer(r$exit_code), 1L),
    started_at = vapply(x, function(r) r$started_at, ""),
    finished_at = vapply(x, function(r) text(r$finished_at), ""),
    actor = vapply(x, function(r) r$actor, ""),
    command = vapply(x, function(r) paste(unlist(r$command), collapse = " "), ""),
    stringsAsFactors = FALSE
  )
}

#' @export
print.tr_run_list <- function(x, ...) {
  print_table(as.data.frame(x), sprintf("%d run%s", length(x), if (length(x) == 1) "" else "s"),
    c("id", "environment", "state", "exit_code", "target", "started_at"))
  invisible(x)
}

#' @export
`[.tr_run_list` <- function(x, i) structure(unclass(x)[i], class = class(x))
