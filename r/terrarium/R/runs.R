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

#' Submit a run (not offered by the team server)
#'
#' The team server records runs but does not start them: `terrarium run` starts the command
#' (here, or as a job on a Slurm or Ray compute target) and records it on the server. The
#' server's API has no endpoint that takes a command to run, so this function signals a
#' `terrarium_unsupported` condition without sending anything. Runs submitted with
#' `terrarium run --env REF --target TARGET -- COMMAND` against the same workspace appear in
#' [tr_runs()], with their logs in [tr_run_logs()].
#'
#' @param environment An environment name or `tr_environment`.
#' @param command The command and its arguments, a character vector.
#' @param target `"local"`, `"container"` or a compute target's name.
#' @param workspace A [tr_workspace()].
#' @return Does not return.
#' @export
tr_submit_run <- function(environment, command, target = "local", workspace = tr_workspace()) {
  stop(tr_condition(
    paste(
      "the team server records runs but does not start them: its API has no endpoint that",
      "submits a command (POST /api/v1/runs records a run its client has already started).",
      "Start it with `terrarium run --env REF --target TARGET -- COMMAND` against this",
      "workspace; tr_runs() and tr_run_logs() then show it"
    ),
    "terrarium_unsupported",
    code = "unsupported"
  ))
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
