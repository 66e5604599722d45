//! One command run to its report: the dispatch from a parsed [`Command`] to its job
//! (or to `schedule`), kept apart from `jobs` so that `schedule`, which calls the jobs,
//! is not imported by them.

use tokio_util::sync::CancellationToken;

use crate::cli::Command;
use crate::error::{Error, Result};
use crate::jobs::{self, store_display, Context, Rendered};

/// Runs one command to its report.
///
/// # Errors
/// What the job returns: a usage error (exit 2) for bad flags, or the error that
/// stopped the operation (exit 1). A job that ran to the end and failed (a failed
/// verification) is a report whose [`Rendered::succeeded`] is false.
pub async fn run(command: Command, cancel: CancellationToken) -> Result<Rendered> {
    match command {
        Command::Backup(args) => {
            let context = Context::one_shot(args.flags.notify.notifier()?, store_display(&args.flags.store), cancel);
            jobs::backup::run(&context, &args.flags).await.map(|report| Rendered::of(&report))
        }
        Command::List(args) => jobs::list::run(&args).await.map(|report| Rendered::of(&report)),
        Command::Verify(args) => {
            let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
            jobs::verify::run(&context, &args).await
        }
        Command::Restore(args) => jobs::restore::run(&args.options()?, cancel).await.map(|report| Rendered::of(&report)),
        Command::Prune(args) => {
            let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
            jobs::prune::run(&context, &args).await.map(|report| Rendered::of(&report))
        }
        Command::Oplog(args) => {
            let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
            jobs::oplog::run(&context, &args).await.map(|report| Rendered::of(&report))
        }
        Command::SampleData(args) => jobs::sample_data::run(&args).await.map(|report| Rendered::of(&report)),
        Command::Schedule(args) => {
            let stopped = crate::schedule::run_schedule(args.options()?, cancel).await?;
            Ok(Rendered::of(&stopped))
        }
        Command::Healthcheck(args) => jobs::healthcheck::run(&args).await.map(|report| Rendered::of(&report)),
    }
}

/// Refuses `--json` for a command that prints no JSON document.
///
/// # Errors
/// A usage error naming the command.
pub fn refuse_json(command: &Command) -> Result<()> {
    match command {
        Command::Schedule(_) => Err(Error::usage("schedule runs until it is stopped and prints no JSON document: drop --json (it serves /metrics)")),
        _ => Ok(()),
    }
}
