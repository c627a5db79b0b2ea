//! The service front on its own: what a deployment's image starts. Built statically by
//! `scripts/build-front.sh`, so that the image needs no C library for it.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "terrarium-serve",
    version,
    about = "Serve an Azure ML entry script with a given Python"
)]
struct Cli {
    #[command(flatten)]
    args: terrarium_serve::standalone::ServeArgs,
}

fn main() -> ExitCode {
    match terrarium_serve::standalone::run(Cli::parse().args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
