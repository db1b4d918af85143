//! The `probe` command line: parse, then run the command on the shared pipeline.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser as _;
use probe_user::cli::{Cli, Command, DumpOptions, RecordOptions, SpinOptions, WatchOptions};
use probe_user::commands;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Spin(args) => commands::spin::run(&SpinOptions::from(args), started).map(|()| 0),
        Command::Record(args) => RecordOptions::try_from(args)
            .map_err(anyhow::Error::msg)
            .and_then(|options| commands::record::run(&options, started)),
        Command::Watch(args) => commands::watch::run(&WatchOptions::from(args)).map(|()| 0),
        Command::Dump(args) => commands::dump::run(&DumpOptions::from(args)).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            // One line: the context chain joined, so scripts and people both get the cause.
            probe_user::diag!("probe: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
