# Definition files: the server takes a definition in Terrarium's JSON form. A `.json` file is
# read here; every other format (conda, requirements, Azure ML, native YAML, Dockerfiles, ...)
# is read by the terrarium CLI's `env validate --json`, the one reader of those formats, as
# the Python SDK does. This file holds no format rules of its own.

# The terrarium binary: $TERRARIUM_BIN, else `terrarium` on PATH; NULL when there is none.
find_binary <- function(call = sys.call(sys.parent())) {
  force(call)
  bin <- Sys.getenv("TERRARIUM_BIN")
  if (nzchar(bin)) {
    if (!file.exists(bin)) {
      stop(tr_condition(sprintf("TERRARIUM_BIN names %s, which does not exist", bin),
        "terrarium_invalid", code = "invalid", call = call))
    }
    return(bin)
  }
  found <- Sys.which("terrarium")
  if (nzchar(found)) found else NULL
}

# The definition in `file`, and where it came from (the registration's `source`).
read_definition_file <- function(file, format = NULL, call = sys.call(sys.parent())) {
  force(call)
  if (!is.character(file) || length(file) != 1 || is.na(file) || !nzchar(file)) {
    tr_abort_invalid("`file` must be the path of one file or folder", call = call)
  }
  if (!file.exists(file)) {
    tr_abort_invalid(sprintf("%s: no such file", file), call = call)
  }
  if (!is.null(format)) check_string(format, "format", call = call)
  if (is.null(format) && !dir.exists(file) && grepl("\\.json$", file, ignore.case = TRUE)) {
    return(read_json_definition(file, call))
  }
  bin <- find_binary(call)
  if (is.null(bin)) {
    stop(tr_condition(
      sprintf(paste(
        "reading %s needs the terrarium CLI (set TERRARIUM_BIN, or put `terrarium` on PATH):",
        "the server takes definitions in Terrarium's JSON form, and the CLI is the reader of",
        "conda, requirements, Azure ML, native YAML and Dockerfile definitions"
      ), file),
      c("terrarium_unsupported_format", "terrarium_invalid"),
      code = "invalid",
      call = call
    ))
  }
  validated <- cli_validate(bin, file, format, call)
  for (warning in validated$warnings) {
    warning(structure(
      class = c("terrarium_warning", "warning", "condition"),
      list(message = location_text(warning), call = call)
    ))
  }
  list(
    definition = validated$definition,
    source = list(
      kind = "import",
      file = normalizePath(validated$files[[1]] %||% file),
      format = validated$format
    )
  )
}

# `FILE:LINE: field `FIELD`: message`, as the CLI prints a warning.
location_text <- function(warning) {
  where <- warning$location$file %||% ""
  if (!is.null(warning$location$line)) where <- paste0(where, ":", warning$location$line)
  if (!is.null(warning$location$field)) {
    where <- sprintf("%s: field `%s`", where, warning$location$field)
  }
  paste0(where, ": ", warning$message)
}

# `terrarium env validate FILE --json`; its error (which names the file, line and field) as a
# condition: a mistake in the file (exit code 2) is `terrarium_invalid`.
cli_validate <- function(bin, file, format, call) {
  args <- c("env", "validate", file, "--json", if (!is.null(format)) c("--format", format))
  errors <- tempfile("terrarium-validate-")
  on.exit(unlink(errors))
  out <- suppressWarnings(system2(bin, shQuote(args), stdout = TRUE, stderr = errors))
  status <- attr(out, "status") %||% 0L
  if (status != 0) {
    lines <- readLines(errors, warn = FALSE)
    # The error and its causes; the CLI's hints speak of its own flags.
    said <- grep("^(error: |  Caused by: )", lines, value = TRUE)
    message <- paste(sub("^error: ", "", trimws(said, "right")), collapse = "\n")
    if (!nzchar(message)) message <- paste(c(sprintf("terrarium env validate failed (%d)", status), lines), collapse = "\n")
    classes <- if (status == 2) "terrarium_invalid" else character()
    stop(tr_condition(message, classes, code = if (status == 2) "invalid" else NA_character_,
      call = call))
  }
  jsonlite::parse_json(paste(out, collapse = "\n"), simplifyVector = FALSE)
}

# A `.json` file: a definition, or an object with a `definition` member (what
# `terrarium env validate FILE --json` and `terrarium env show REF --json` print).
read_json_definition <- function(file, call) {
  text <- paste(readLines(file, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  parsed <- tryCatch(jsonlite::parse_json(text, simplifyVector = FALSE), error = identity)
  if (inherits(parsed, "error")) {
    tr_abort_invalid(
      sprintf("%s is not valid JSON: %s", file, trimws(conditionMessage(parsed))),
      call = call
    )
  }
  if (!is.list(parsed) || is.null(names(parsed))) {
    tr_abort_invalid(sprintf(
      "%s must hold a JSON object: a definition, or an object with a `definition`", file
    ), call = call)
  }
  source <- list(kind = "import", file = normalizePath(file))
  if (is.list(parsed$definition) && !is.null(names(parsed$definition))) {
    # `env validate --json` names the file it read and its format; `env show --json` names
    # neither at the top (its `source` is the original registration's).
    if (is.character(parsed$file) && length(parsed$file) == 1) source$file <- parsed$file
    if (is.character(parsed$format) && length(parsed$format) == 1) source$format <- parsed$format
    parsed <- parsed$definition
  }
  list(definition = parsed, source = source)
}

# A definition that names a Docker build context can only be registered where the workspace
# has that context: builds unpack it from there. Packing and uploading a context is the CLI's
# job (`terrarium env create`); this client checks that it is there.
check_build_context <- function(definition, workspace, call) {
  digest <- definition$docker$build_context_digest
  if (is.null(digest)) return(invisible())
  req <- httr2::request(paste0(workspace$url, "/api/v1/contexts/", segment(digest)))
  req <- httr2::req_method(req, "HEAD")
  if (!is.null(workspace$secret$token)) {
    req <- httr2::req_auth_bearer_token(req, workspace$secret$token)
  }
  req <- httr2::req_error(req, is_error = function(resp) FALSE)
  status <- tryCatch(httr2::resp_status(httr2::req_perform(req)), error = function(err) NA)
  if (identical(status, 404L)) {
    stop(tr_condition(
      sprintf(paste(
        "the build context %s of this Dockerfile definition is not in the workspace, and the",
        "R client does not upload build contexts: register it once with",
        "`terrarium env create -f FILE`, which does"
      ), digest),
      "terrarium_invalid", code = "invalid", call = call
    ))
  }
  # Any other refusal (a bad token, ...) is reported by the registration itself.
  invisible()
}
