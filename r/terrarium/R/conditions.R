# Conditions: every failure is an R condition of class `terrarium_error`, with classes for what
# went wrong, so that callers can write `tryCatch(..., terrarium_not_found = function(e) ...)`.
# A condition carries data (the HTTP status, the server's stable code, what was not found);
# its message is the server's own.

#' Errors raised by the Terrarium client
#'
#' Every error is a condition of class `terrarium_error` with the server's message, and
#' fields `status` (the HTTP status, `NA` when no server answered), `code` (the server's
#' stable code: `not_found`, `invalid`, `conflict`, `archived`, `referenced`, `curated`,
#' `unauthorized`, `forbidden`, `payload_too_large`, `timeout`, `internal`, ...) and
#' `subject` (for `not_found`: what was not found).
#'
#' Classes, most specific first:
#' * by HTTP status: `terrarium_invalid` (400), `terrarium_unauthorized` (401),
#'   `terrarium_forbidden` (403), `terrarium_not_found` (404), `terrarium_conflict` (409),
#'   `terrarium_payload_too_large` (413), `terrarium_timeout` (503),
#'   `terrarium_server_error` (other 5xx);
#' * by the server's code when it says more than the status: `terrarium_archived`,
#'   `terrarium_referenced`, `terrarium_curated`;
#' * `terrarium_transport_error`: no server answered, or something that is not the
#'   Terrarium API did;
#' * `terrarium_unsupported`: what was asked needs what is not there (the server's API cannot do it, or the terrarium CLI is not installed);
#' * `terrarium_invalid` is also raised before any request, for arguments or files the
#'   client can tell are wrong.
#'
#' @examples
#' \dontrun{
#' tryCatch(
#'   tr_environment("no-such-environment"),
#'   terrarium_not_found = function(e) conditionMessage(e)
#' )
#' }
#' @name terrarium_error
NULL

# The condition object. `classes` come before the general ones.
tr_condition <- function(message, classes = character(), status = NA_integer_,
                         code = NA_character_, subject = NULL, call = NULL) {
  structure(
    class = unique(c(classes, "terrarium_error", "error", "condition")),
    list(message = message, call = call, status = status, code = code, subject = subject)
  )
}

# Signal a condition for a mistake the client sees before asking the server.
tr_abort_invalid <- function(message, call = sys.call(sys.parent())) {
  force(call)
  stop(tr_condition(message, "terrarium_invalid", code = "invalid", call = call))
}

status_class <- function(status) {
  switch(as.character(status),
    "400" = "terrarium_invalid",
    "401" = "terrarium_unauthorized",
    "403" = "terrarium_forbidden",
    "404" = "terrarium_not_found",
    "409" = "terrarium_conflict",
    "413" = "terrarium_payload_too_large",
    "503" = "terrarium_timeout",
    if (status >= 500) "terrarium_server_error" else character()
  )
}

# The condition for an error answer of the API (`{"error": {status, code, message}}`).
api_condition <- function(status, error, call = NULL) {
  code <- error$code %||% NA_character_
  message <- error$message %||% paste("the server answered", status)
  if (status == 401) {
    message <- paste0(message, " (pass `token` to tr_workspace() or set TERRARIUM_TOKEN)")
  }
  by_code <- if (!is.na(code)) paste0("terrarium_", code) else character()
  tr_condition(
    message,
    classes = c(by_code, status_class(status)),
    status = as.integer(status),
    code = code,
    subject = error$subject,
    call = call
  )
}

`%||%` <- function(x, y) if (is.null(x)) y else x
