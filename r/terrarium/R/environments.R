# Environments: list, read, register, label. The server checks every definition with the same
# rules as the CLI (terrarium-spec); this file builds requests and reads answers, and holds no
# definition rules of its own.

env_path <- function(name) paste0("/environments/", segment(name))

check_string <- function(value, what, call = sys.call(sys.parent())) {
  force(call)
  if (!is.character(value) || length(value) != 1 || is.na(value) || !nzchar(value)) {
    tr_abort_invalid(sprintf("`%s` must be one non-empty string", what), call = call)
  }
}

# A named list for a JSON object, from a named character vector or list; NULL when empty.
named_object <- function(value, what, call = sys.call(sys.parent())) {
  force(call)
  if (is.null(value) || length(value) == 0) {
    return(NULL)
  }
  keys <- names(value)
  if (is.null(keys) || any(!nzchar(keys)) || anyDuplicated(keys)) {
    tr_abort_invalid(sprintf("`%s` must be named, each name once: c(KEY = \"value\")", what),
      call = call
    )
  }
  as.list(vapply(value, as.character, ""))
}

as_tr_environment <- function(record) structure(record, class = "tr_environment")

# `noun` says what each item is when the list is printed.
environment_list <- function(records, noun) {
  structure(lapply(records, as_tr_environment), class = "tr_environment_list", noun = noun)
}

#' Environments in the workspace
#'
#' The latest version of each environment, curated ones included. Anonymous environments
#' (`anonymous/...`, registered from nameless files) are listed too.
#'
#' @param search Only environments whose name or description contains this text (any case).
#' @param tag Only environments with this tag: `"KEY"` or `"KEY=VALUE"`.
#' @param include_archived Include archived environments.
#' @param workspace A [tr_workspace()].
#' @return A `tr_environment_list`: a list of `tr_environment` objects; `as.data.frame()`
#'   gives one row per environment.
#' @export
tr_environments <- function(search = NULL, tag = NULL, include_archived = FALSE,
                            workspace = tr_workspace()) {
  records <- tr_all(workspace, "/environments", list(
    search = search,
    tag = tag,
    include_archived = if (isTRUE(include_archived)) TRUE
  ))
  environment_list(records, "environment")
}

#' One environment version
#'
#' @param name The environment's name, e.g. `"sklearn"` or `"curated/sklearn"`.
#' @param version A version (`"3"`); at most one of `version` and `label`.
#' @param label A label (`"production"`, `"latest"`).
#' @param workspace A [tr_workspace()].
#' @return A `tr_environment`: the version's record, a list with `name`, `version`,
#'   `labels`, `content_hash`, `lock_hash` (`NULL` until it is locked), `created_at`,
#'   `created_by`, `source`, `parent`, `description`, `tags`, `archived`, `curated` and
#'   `definition` (Terrarium's JSON form). Without `version` or `label`, the latest version.
#' @export
tr_environment <- function(name, version = NULL, label = NULL, workspace = tr_workspace()) {
  check_string(name, "name")
  if (!is.null(version) && !is.null(label)) {
    tr_abort_invalid("give `version` or `label`, not both")
  }
  path <- env_path(name)
  if (!is.null(version)) {
    check_string(as.character(version), "version")
    path <- paste0(path, "/versions/", segment(version))
  } else if (!is.null(label)) {
    check_string(label, "label")
    path <- paste0(path, "/labels/", segment(label))
  }
  as_tr_environment(tr_json(tr_request(workspace, "GET", path)))
}

#' Every version of an environment
#'
#' @inheritParams tr_environment
#' @return A `tr_environment_list`, oldest version first.
#' @export
tr_environment_versions <- function(name, workspace = tr_workspace()) {
  check_string(name, "name")
  records <- tr_all(workspace, paste0(env_path(name), "/versions"))
  environment_list(records, paste("version of", name))
}

#' Register an environment from a definition file
#'
#' Reads a definition in any format Terrarium reads (a conda `environment.yml`, a
#' `requirements.txt`, an Azure ML v1 folder or v2 YAML, Terrarium's native YAML, a
#' Dockerfile, ...) and registers it on the server. The server's API takes definitions in
#' Terrarium's JSON form, so every format but JSON is read by the terrarium CLI
#' (`terrarium env validate FILE --json`, the one reader of those formats): it is found
#' through `TERRARIUM_BIN`, else `terrarium` on `PATH`. A `.json` file is sent as it is: a
#' definition in Terrarium's JSON form, or an object with a `definition` member (what
#' `terrarium env validate FILE --json` and `terrarium env show REF --json` print).
#'
#' A mistake in the file is a `terrarium_invalid` condition naming the file, the line and the
#' field; what the reader ignores (an unknown key, ...) is a `terrarium_warning`. The server
#' checks the definition again with the same rules.
#'
#' As in Azure ML, the same content as the latest version returns that version; different
#' content makes the next version. The version is registered without a lock: the first
#' build or run locks it (`terrarium env lock NAME:VERSION`), and the lock never changes
#' afterwards. A Dockerfile definition with a build context registers only where the
#' workspace already has that context (`terrarium env create -f FILE` uploads it).
#'
#' @param file A definition file or folder (see above).
#' @param format The file's format (`conda`, `requirements`, `native`, `aml-v2`, `aml-v1`,
#'   `dockerfile`, `conda-prefix`, `venv`); detected when `NULL`.
#' @param name,version,description Override the definition's. A file without a name (a
#'   `requirements.txt`, most conda files) needs `name`.
#' @param tags Override the definition's tags: a named character vector.
#' @param workspace A [tr_workspace()].
#' @return The registered `tr_environment`; its attribute `created` is `FALSE` when an
#'   existing version had the same content.
#' @export
tr_register_environment <- function(file, format = NULL, name = NULL, version = NULL,
                                    description = NULL, tags = NULL,
                                    workspace = tr_workspace()) {
  check_workspace(workspace)
  read <- read_definition_file(file, format)
  definition <- read$definition
  if (!is.null(name)) {
    check_string(name, "name")
    definition$name <- name
  }
  if (!is.null(version)) {
    check_string(as.character(version), "version")
    definition$version <- as.character(version)
  }
  if (!is.null(description)) {
    check_string(description, "description")
    definition$description <- description
  }
  if (!is.null(tags)) {
    definition$tags <- named_object(tags, "tags") %||% structure(list(), names = character())
  }
  check_build_context(definition, workspace, call = sys.call())
  register_definition(definition, read$source, workspace)
}

register_definition <- function(definition, source, workspace, call = sys.call(sys.parent())) {
  force(call)
  answer <- tr_json(tr_request(
    workspace, "POST", "/environments",
    body = list(definition = definition, source = source),
    call = call
  ))
  environment <- as_tr_environment(answer$record)
  attr(environment, "created") <- isTRUE(answer$created)
  environment
}

#' A CRAN package for [tr_r_environment()]
#'
#' @param name The package's name on CRAN, e.g. `"data.table"`.
#' @param version A version: `"1.14.8"`, or `"1.14"` for any 1.14.x. `NULL`: any version.
#' @return A `tr_cran_package`.
#' @export
tr_cran_package <- function(name, version = NULL) {
  check_string(name, "name")
  # CRAN's rule for package names; the conda name is derived from it.
  if (!grepl("^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$", name)) {
    tr_abort_invalid(sprintf(
      "`%s` is not a CRAN package name: letters, digits and `.`, starting with a letter", name
    ))
  }
  if (!is.null(version)) check_string(as.character(version), "version")
  structure(list(name = name, version = if (!is.null(version)) as.character(version)),
    class = "tr_cran_package"
  )
}

#' @export
print.tr_cran_package <- function(x, ...) {
  cat(sprintf("<CRAN package %s%s> (conda: %s)\n", x$name,
    if (is.null(x$version)) "" else paste0(" ", x$version), cran_spec(x)))
  invisible(x)
}

# The conda-forge spec of a CRAN package: `r-` and the lowercased name, and `=VERSION`
# (conda's `=1.14` is any 1.14.x; `=1.14.8` that version and its rebuilds).
cran_spec <- function(package) {
  spec <- paste0("r-", tolower(package$name))
  if (!is.null(package$version)) spec <- paste0(spec, "=", package$version)
  spec
}

#' Register an environment with R and CRAN packages
#'
#' Terrarium's counterpart of Azure ML's `r_environment()`: R (`r-base`) and CRAN packages
#' from conda-forge, where CRAN package `ggplot2` is `r-ggplot2`. The environment is
#' registered on the server like any other (same content, same version) and is locked on
#' first use, when its packages are resolved from the channels.
#'
#' @param name The environment's name.
#' @param cran_packages CRAN packages: a character vector of names, or a list of names and
#'   [tr_cran_package()] objects (for a version).
#' @param r_version The R version, e.g. `"4.3"`; `NULL` for any.
#' @param conda_packages Further conda match specs, e.g. `"gdal>=3.6"`.
#' @param channels Conda channels, in priority order.
#' @param environment_variables A named character vector; values may be `${secret:NAME}`
#'   references, resolved only when a process starts.
#' @param description,tags,version As for [tr_register_environment()].
#' @param workspace A [tr_workspace()].
#' @return The registered `tr_environment` (attribute `created` as for
#'   [tr_register_environment()]).
#' @examples
#' \dontrun{
#' tr_r_environment("r-stats", c("ggplot2", "data.table"), r_version = "4.3")
#' tr_r_environment("r-pinned", list(tr_cran_package("ggplot2", "3.4.4")))
#' }
#' @export
tr_r_environment <- function(name, cran_packages = character(), r_version = NULL,
                             conda_packages = character(), channels = "conda-forge",
                             environment_variables = NULL, description = NULL, tags = NULL,
                             version = NULL, workspace = tr_workspace()) {
  check_workspace(workspace)
  check_string(name, "name")
  packages <- lapply(as.list(cran_packages), function(package) {
    if (inherits(package, "tr_cran_package")) package else tr_cran_package(package)
  })
  if (!is.null(r_version)) check_string(as.character(r_version), "r_version")
  if (!is.character(channels) || length(channels) == 0) {
    tr_abort_invalid("`channels` must name at least one conda channel")
  }
  if (!is.character(conda_packages)) {
    tr_abort_invalid("`conda_packages` must be a character vector of conda match specs")
  }
  dependencies <- c(
    if (is.null(r_version)) "r-base" else paste0("r-base=", r_version),
    vapply(packages, cran_spec, ""),
    conda_packages
  )
  definition <- list(
    name = name,
    conda = list(channels = as.list(channels), dependencies = as.list(dependencies))
  )
  if (!is.null(version)) definition$version <- as.character(version)
  if (!is.null(description)) definition$description <- description
  definition$tags <- named_object(tags, "tags")
  definition$environment_variables <- named_object(environment_variables, "environment_variables")
  register_definition(definition, list(kind = "manual"), workspace)
}

#' Point a label at an environment version
#'
#' Moves the label if it points elsewhere. `latest` is kept by the server and cannot be set.
#'
#' @param environment A `tr_environment` (its version is labelled), or an environment's name.
#' @param label The label, e.g. `"production"`.
#' @param version The version to label; default: `environment`'s version, or for a name the
#'   latest version.
#' @param workspace A [tr_workspace()].
#' @return The labelled `tr_environment`, as the server now has it.
#' @export
tr_label <- function(environment, label, version = NULL, workspace = tr_workspace()) {
  check_string(label, "label")
  if (inherits(environment, "tr_environment")) {
    name <- environment$name
    version <- version %||% environment$version
  } else {
    check_string(environment, "environment")
    name <- environment
    version <- version %||% tr_environment(name, workspace = workspace)$version
  }
  tr_request(workspace, "PUT", paste0(env_path(name), "/labels/", segment(label)),
    body = list(version = as.character(version))
  )
  tr_environment(name, label = label, workspace = workspace)
}

#' Remove a label from an environment
#'
#' @param name The environment's name (or a `tr_environment`).
#' @param label The label.
#' @param workspace A [tr_workspace()].
#' @return `NULL`, invisibly.
#' @export
tr_unlabel <- function(name, label, workspace = tr_workspace()) {
  if (inherits(name, "tr_environment")) name <- name$name
  check_string(name, "name")
  check_string(label, "label")
  tr_request(workspace, "DELETE", paste0(env_path(name), "/labels/", segment(label)))
  invisible(NULL)
}

# Printing ---------------------------------------------------------------------------------

# "  label:      value" lines, skipping empty values.
field_lines <- function(...) {
  fields <- list(...)
  lines <- character()
  for (label in names(fields)) {
    value <- unlist(fields[[label]])
    if (length(value) == 0 || all(is.na(value)) || !any(nzchar(value))) next
    lines <- c(lines, sprintf("  %-12s %s", paste0(label, ":"), paste(value, collapse = ", ")))
  }
  lines
}

key_values <- function(map) {
  if (length(map) == 0) return(NULL)
  paste0(names(map), "=", unlist(map))
}

#' @export
format.tr_environment <- function(x, ...) {
  d <- x$definition
  source <- x$source$kind
  if (!is.null(x$source$file)) source <- paste(source, "of", x$source$file)
  if (!is.null(x$source$format)) source <- paste0(source, " (", x$source$format, ")")
  c(
    sprintf("<terrarium environment %s:%s>%s", x$name, x$version,
      if (isTRUE(x$archived)) " archived" else ""),
    field_lines(
      labels = x$labels,
      description = x$description,
      created = sprintf("%s by %s", x$created_at, x$created_by),
      source = source,
      parent = x$parent,
      tags = key_values(x$tags),
      content = x$content_hash,
      lock = x$lock_hash %||% "not locked yet (locked on first use)",
      channels = d$conda$channels,
      conda = d$conda$dependencies,
      python = d$python$version,
      pip = vapply(d$python$pip %||% list(), function(r) r$spec, ""),
      image = d$docker$base_image,
      variables = names(d$environment_variables)
    )
  )
}

#' @export
print.tr_environment <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

#' @export
as.data.frame.tr_environment_list <- function(x, ...) {
  text <- function(value) if (is.null(value)) NA_character_ else as.character(value)
  data.frame(
    name = vapply(x, function(e) e$name, ""),
    version = vapply(x, function(e) e$version, ""),
    labels = vapply(x, function(e) paste(unlist(e$labels), collapse = ","), ""),
    created_by = vapply(x, function(e) e$created_by, ""),
    created_at = vapply(x, function(e) e$created_at, ""),
    locked = vapply(x, function(e) !is.null(e$lock_hash), TRUE),
    archived = vapply(x, function(e) isTRUE(e$archived), TRUE),
    description = vapply(x, function(e) text(e$description), ""),
    stringsAsFactors = FALSE
  )
}

#' @export
print.tr_environment_list <- function(x, ...) {
  noun <- attr(x, "noun") %||% "environment"
  if (length(x) != 1) noun <- sub("^(\\w+)", "\\1s", noun)
  print_table(as.data.frame(x), paste(length(x), noun),
    c("name", "version", "labels", "created_by", "locked"))
  invisible(x)
}

#' @export
`[.tr_environment_list` <- function(x, i) {
  structure(unclass(x)[i], class = class(x), noun = attr(x, "noun"))
}

print_table <- function(frame, what, columns) {
  cat(sprintf("<terrarium: %s>\n", what))
  if (nrow(frame) > 0) print(frame[, columns, drop = FALSE], row.names = FALSE)
}
