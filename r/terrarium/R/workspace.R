# The workspace (a team server's address and a token) and the one place requests are made.

#' A workspace served by a Terrarium team server
#'
#' The R client speaks to a team server (`terrarium server`) through its REST API under
#' `/api/v1`; it does not open local workspace directories or databases.
#'
#' @param url The server's address, `http(s)://HOST[:PORT]`. Default: the
#'   `TERRARIUM_WORKSPACE` environment variable.
#' @param token An API token (`terrarium token create`). Default: the `TERRARIUM_TOKEN`
#'   environment variable. It is sent as `Authorization: Bearer` and never printed.
#' @return An object of class `tr_workspace`.
#' @examples
#' \dontrun{
#' ws <- tr_workspace("http://terrarium.example:8765", token = Sys.getenv("MY_TOKEN"))
#' tr_environments(workspace = ws)
#' }
#' @export
tr_workspace <- function(url = Sys.getenv("TERRARIUM_WORKSPACE"),
                         token = Sys.getenv("TERRARIUM_TOKEN")) {
  if (!is.character(url) || length(url) != 1 || is.na(url) || !nzchar(url)) {
    tr_abort_invalid(paste(
      "no workspace: pass `url`, or set TERRARIUM_WORKSPACE to the team server's address",
      "(http(s)://HOST:PORT)"
    ))
  }
  if (!grepl("^https?://[^/?#]+", url)) {
    tr_abort_invalid(sprintf(
      "`%s` is not a server address: the R client speaks to a team server, http(s)://HOST:PORT",
      url
    ))
  }
  if (is.null(token) || is.na(token) || !nzchar(token)) {
    token <- NULL
  } else if (!is.character(token) || length(token) != 1) {
    tr_abort_invalid("`token` must be one string")
  }
  # The token lives in an environment so that print(), str() and dput() of the workspace
  # never show it.
  secret <- new.env(parent = emptyenv())
  secret$token <- token
  structure(list(url = sub("/+$", "", url), secret = secret), class = "tr_workspace")
}

#' @export
print.tr_workspace <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

#' @export
format.tr_workspace <- function(x, ...) {
  token <- if (is.null(x$secret$token)) "none" else "set (not shown)"
  c(sprintf("<terrarium workspace %s>", x$url), paste0("  token: ", token))
}

#' Who the workspace's token belongs to
#'
#' @param workspace A [tr_workspace()].
#' @return A list with `actor` (the token's name), `role` (`reader`, `contributor` or
#'   `admin`) and `token_id`.
#' @export
tr_whoami <- function(workspace = tr_workspace()) {
  tr_json(tr_request(workspace, "GET", "/whoami"))
}

check_workspace <- function(workspace) {
  if (!inherits(workspace, "tr_workspace")) {
    tr_abort_invalid("`workspace` must be a tr_workspace(); see ?tr_workspace", call = NULL)
  }
}

# One path segment, percent-encoded (an environment name such as `curated/sklearn` is one
# segment: its `/` becomes %2F).
segment <- function(text) {
  utils::URLencode(enc2utf8(as.character(text)), reserved = TRUE)
}

# Send one request to `/api/v1{path}`; the response on success, a terrarium condition on an
# error answer or when no server answers.
tr_request <- function(workspace, method, path, query = list(), body = NULL,
                       call = sys.call(sys.parent())) {
  force(call)
  check_workspace(workspace)
  req <- httr2::request(paste0(workspace$url, "/api/v1", path))
  req <- httr2::req_method(req, method)
  req <- httr2::req_user_agent(req, paste0("terrarium-r/", utils::packageVersion("terrarium")))
  req <- httr2::req_timeout(req, 120)
  if (!is.null(workspace$secret$token)) {
    req <- httr2::req_auth_bearer_token(req, workspace$secret$token)
  }
  # Query values as the server reads them: `true`, not `TRUE`; 100000, not 1e+05.
  query <- lapply(Filter(Negate(is.null), query), function(value) {
    if (is.logical(value)) tolower(as.character(value))
    else if (is.numeric(value)) format(value, scientific = FALSE)
    else value
  })
  if (length(query) > 0) {
    req <- do.call(httr2::req_url_query, c(list(req), query))
  }
  if (!is.null(body)) {
    req <- httr2::req_body_json(req, body, auto_unbox = TRUE, null = "null", digits = NA)
  }
  req <- httr2::req_error(req, is_error = function(resp) FALSE)
  resp <- tryCatch(httr2::req_perform(req), error = function(err) {
    stop(tr_condition(
      sprintf("cannot reach the workspace server at %s: %s", workspace$url, conditionMessage(err)),
      "terrarium_transport_error",
      call = call
    ))
  })
  status <- httr2::resp_status(resp)
  if (status < 400) {
    return(resp)
  }
  error <- tryCatch(
    httr2::resp_body_json(resp, simplifyVector = FALSE)$error,
    error = function(err) NULL
  )
  if (!is.list(error) || is.null(error$message)) {
    stop(tr_condition(
      sprintf("%s answered %d with something that is not the Terrarium API", workspace$url, status),
      "terrarium_transport_error",
      status = as.integer(status),
      call = call
    ))
  }
  stop(api_condition(status, error, call = call))
}

tr_json <- function(resp) {
  httr2::resp_body_json(resp, simplifyVector = FALSE)
}

# Every item of a paged list (`{"items", "total", "limit", "offset"}`), a page at a time
# (the server's largest page is 1000; the option `terrarium.page_size` makes it smaller).
tr_all <- function(workspace, path, query = list(), call = sys.call(sys.parent())) {
  force(call)
  size <- getOption("terrarium.page_size", 1000)
  items <- list()
  repeat {
    page <- tr_json(tr_request(
      workspace, "GET", path,
      query = c(query, list(limit = size, offset = length(items))),
      call = call
    ))
    items <- c(items, page$items)
    if (length(page$items) == 0 || length(items) >= page$total) {
      return(items)
    }
  }
}
