#' terrarium: R client for a Terrarium team server
#'
#' Reads and registers versioned environments on a Terrarium team server
#' (`terrarium server`) through its REST API, and reads the runs and deployments recorded
#' there. Start with [tr_workspace()] (or set `TERRARIUM_WORKSPACE` and `TERRARIUM_TOKEN`),
#' then [tr_environments()], [tr_environment()], [tr_register_environment()],
#' [tr_r_environment()], [tr_label()], [tr_runs()], [tr_run_logs()] and [tr_deployments()].
#' Failures are conditions of class `terrarium_error`; see [terrarium_error].
#'
#' @keywords internal
"_PACKAGE"
