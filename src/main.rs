//! The `ingest-backup` binary: parse flags, run one command, report, exit with
//! 0 (success), 1 (the operation failed) or 2 (bad usage or configuration).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use ingest_backup::cli::Cli;
use ingest_backup::jobs::error_document;
use ingest_backup::{command, progress};

/// Runs the process with glibc's malloc limited to two arenas (`MALLOC_ARENA_MAX=2`)
/// unless the environment already sets a limit, by executing itself again with the
/// variable set (the same PID, arguments and environment otherwise; glibc only reads
/// it at start-up). A backup allocates megabyte buffers (cursor batches, compression
/// blocks, upload parts) on whichever runtime, blocking or compression thread is
/// running; glibc's default gives busy threads arenas of their own, up to eight per
/// core, each keeping its freed megabytes. Measured on a 300 MiB backup: 260 MiB peak
/// RSS with the default, 146 MiB with two arenas (BENCHMARKS.md, section 6). If the
/// executable cannot be run again, the process carries on with glibc's default.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let Ok(executable) = std::env::current_exe() else { return };
        let mut arguments = std::env::args_os();
        let argument_zero = arguments.next().unwrap_or_else(|| executable.clone().into_os_string());
        // `exec` returns only if it failed.
        let _ = std::process::Command::new(executable).arg0(argument_zero).args(arguments).env("MALLOC_ARENA_MAX", "2").exec();
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    progress::configure(progress::ProgressSettings { quiet: cli.quiet, interval: cli.progress_interval });
    ingest_backup::store::lock::configure(cli.lock_settings());
    let default_level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        // Log lines are written around a live progress display, not through it.
        .with_writer(progress::StderrAroundProgress)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_target(false)
        // Colour codes only for a person at a terminal: a pipe, a file or a container
        // log collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let cancel = CancellationToken::new();
    runtime.spawn(cancel_on_signal(cancel.clone()));
    let json = cli.json;
    let refused = if json { command::refuse_json(&cli.command) } else { Ok(()) };
    let outcome = refused.and_then(|()| runtime.block_on(command::run(cli.command, cancel)));
    match outcome {
        Ok(report) => {
            report.print(json);
            if report.succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            if json {
                println!("{}", error_document(&error));
            }
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

/// Cancels the run on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C); for
/// `schedule`, the token stops the scheduling and the run gets its grace period.
async fn cancel_on_signal(cancel: CancellationToken) {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM.");
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::warn!("SIGTERM received: stopping."),
        _ = tokio::signal::ctrl_c() => tracing::warn!("SIGINT received: stopping."),
    }
    cancel.cancel();
}
