# Deployments: the scoring services `terrarium deploy` records in the workspace.

as_tr_deployment <- function(record) structure(record, class = "tr_deployment")

#' Deployments recorded in the workspace
#'
#' @param state Only deployments in this state: `"starting"`, `"ready"`, `"failed"` or
#'   `"stopped"`.
#' @param workspace A [tr_workspace()].
#' @return A `tr_deployment_list`, by name; `as.data.frame()` gives one row per deployment.
#' @export
tr_deployments <- function(state = NULL, workspace = tr_workspace()) {
  records <- tr_all(workspace, "/deployments", list(state = state))
  structure(lapply(records, as_tr_deployment), class = "tr_deployment_list")
}

#' One deployment
#'
#' @param name The deployment's name.
#' @param workspace A [tr_workspace()].
#' @return A `tr_deployment`: a list with `name`, `environment`, `version`, `lock_hash`,
#'   `model_path`, `model_hash`, `entry`, `workers`, `url`, `host`, `state`, `reason`,
#'   `actor`, `started_at` and `stopped_at`.
#' @export
tr_deployment <- function(name, workspace = tr_workspace()) {
  check_string(name, "name")
  as_tr_deployment(tr_json(tr_request(workspace, "GET", paste0("/deployments/", segment(name)))))
}

#' @export
format.tr_deployment <- function(x, ...) {
  c(
    sprintf("<terrarium deployment %s> %s", x$name, x$state),
    field_lines(
      url = x$url,
      environment = sprintf("%s:%s", x$environment, x$version),
      model = x$model_path,
      entry = x$entry,
      workers = as.character(x$workers),
      host = x$host,
      actor = x$actor,
      started = x$started_at,
      stopped = x$stopped_at,
      reason = x$reason
    )
  )
}

#' @export
print.tr_deployment <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

#' @export
as.data.frame.tr_deployment_list <- function(x, ...) {
  text <- function(value) if (is.null(value)) NA_character_ else as.character(value)
  data.frame(
    name = vapply(x, function(d) d$name, ""),
    state = vapply(x, function(d) d$state, ""),
    environment = vapply(x, function(d) sprintf("%s:%s", d$environment, d$version), ""),
    url = vapply(x, function(d) text(d$url), ""),
    workers = vapply(x, function(d) as.integer(d$workers), 1L),
    actor = vapply(x, function(d) d$actor, ""),
    started_at = vapply(x, function(d) d$started_at, ""),
    stringsAsFactors = FALSE
  )
}

#' @export
print.tr_deployment_list <- function(x, ...) {
  print_table(as.data.frame(x), sprintf("%d deployment%s", length(x),
    if (length(x) == 1) "" else "s"), c("name", "state", "environment", "url", "workers"))
  invisible(x)
}

#' @export
`[.tr_deployment_list` <- function(x, i) structure(unclass(x)[i], class = class(x))
