//! One command run to its report: the parsed flags validated into the options a job
//! takes (a mistake named before anything runs), the job run, its report returned for
//! the binary to print. It sits above `jobs`, `schedule` and `cli`, so that none of
//! them imports another that imports it.

use tokio_util::sync::CancellationToken;

use crate::cli::{BackupArgs, Command, DrillArgs, EventsArgs, HoldArgs, ListArgs, OplogArgs, PruneArgs, StoreArg, VerifyArgs};
use crate::error::{Error, Result};
use crate::jobs::{self, Context, Rendered};
use crate::notify::Event;
use crate::store;

/// Runs one command to its report.
///
/// # Errors
/// A usage error (exit 2) for bad flags, or the error that stopped the operation
/// (exit 1). A job that ran to the end and failed (a failed verification) is a report
/// whose [`Rendered::succeeded`] is false.
pub async fn run(command: Command, cancel: CancellationToken) -> Result<Rendered> {
    match command {
        Command::Backup(args) => backup(&args, cancel).await,
        Command::List(args) => list(&args).await,
        Command::Events(args) => events(&args).await,
        Command::Verify(args) => verify(&args, cancel).await,
        Command::Restore(args) => Ok(Rendered::of(&jobs::restore::run(&args.options()?, cancel).await?)),
        Command::Drill(args) => drill(&args, cancel).await,
        Command::Exporter(args) => Ok(Rendered::of(&crate::exporter::run_exporter(args.options()?, cancel).await?)),
        Command::Prune(args) => prune(&args, cancel).await,
        Command::Oplog(args) => oplog(&args, cancel).await,
        Command::SampleData(args) => {
            let report = jobs::sample_data::run(&args.uri.uri, &args.spec()?, args.if_empty, args.compat).await?;
            Ok(Rendered::of(&report))
        }
        Command::Schedule(args) => Ok(Rendered::of(&crate::schedule::run_schedule(args.options()?, cancel).await?)),
        Command::Hold(args) => hold(&args, true).await,
        Command::Release(args) => hold(&args, false).await,
        Command::IamPolicy(args) => Ok(Rendered::of(&jobs::hold::iam_policy(&args.role, &args.bucket, &args.prefix)?)),
        Command::Healthcheck(args) => Ok(Rendered::of(&jobs::healthcheck::run(args.url()?, args.timeout).await?)),
    }
}

/// Refuses `--json` for a command that prints no JSON document.
///
/// # Errors
/// A usage error naming the command.
pub fn refuse_json(command: &Command) -> Result<()> {
    match command {
        Command::Schedule(_) => Err(Error::usage("schedule runs until it is stopped and prints no JSON document: drop --json (it serves /metrics)")),
        Command::Exporter(_) => Err(Error::usage("exporter runs until it is stopped and prints no JSON document: drop --json (it serves /metrics)")),
        _ => Ok(()),
    }
}

/// The store as alerts show it, even when it is misconfigured.
fn store_display(store: &StoreArg) -> String {
    store.location().map_or_else(|_| "(not configured)".to_string(), |location| location.to_string())
}

async fn backup(args: &BackupArgs, cancel: CancellationToken) -> Result<Rendered> {
    let context = Context::one_shot(args.flags.notify.notifier()?, store_display(&args.flags.store), cancel);
    let prune = args.flags.prune_options()?;
    let options = context.refused(args.options(), |error| Event::backup_failed(context.store.clone(), error, &Default::default(), 0.0)).await?;
    Ok(Rendered::of(&jobs::backup::run(&context, &options, prune.as_ref()).await?))
}

async fn list(args: &ListArgs) -> Result<Rendered> {
    let location = args.store.location()?;
    let store = store::open(&location, || args.store.s3_settings()).await?;
    Ok(Rendered::of(&jobs::list::run(&location, &store, args.stale_after).await?))
}

async fn events(args: &EventsArgs) -> Result<Rendered> {
    let options = args.options()?;
    let location = args.store.location()?;
    let store = store::open(&location, || args.store.s3_settings()).await?;
    Ok(Rendered::of(&jobs::events::run(&location.to_string(), &store, &options).await?))
}

async fn drill(args: &DrillArgs, cancel: CancellationToken) -> Result<Rendered> {
    let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
    let options = context
        .refused(args.options(), |error| {
            let mut event = Event::failed(crate::notify::Operation::Drill, context.store.clone(), error);
            event.backup = Some(args.backup.clone());
            event
        })
        .await?;
    Ok(Rendered::of(&jobs::drill::run(&context, &options).await?))
}

async fn hold(args: &HoldArgs, on: bool) -> Result<Rendered> {
    let location = args.store.location()?;
    let store = store::open(&location, || args.store.s3_settings()).await?;
    Ok(Rendered::of(&jobs::hold::run(&location, &store, &args.backup, on).await?))
}

async fn verify(args: &VerifyArgs, cancel: CancellationToken) -> Result<Rendered> {
    if let Some(range) = &args.pitr {
        let range = crate::pitr::check::parse_range(range)?;
        let (location, s3) = args.store.resolve()?;
        let store = store::open_with(&location, s3).await?;
        return Ok(Rendered::of(&jobs::verify::check_pitr(&store, range, args.identity.resolve()?, &args.spool.dir()).await?));
    }
    let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
    let options = context.refused(args.options(), |error| Event::verify_refused(&context.store, &args.backup, error)).await?;
    Ok(Rendered::of(&jobs::verify::verify_backup(&context, &options).await?))
}

async fn prune(args: &PruneArgs, cancel: CancellationToken) -> Result<Rendered> {
    let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
    let options = context.refused(args.options(), |error| jobs::prune::failure(&context, error)).await?;
    Ok(Rendered::of(&jobs::prune::run(&context, &options).await?))
}

async fn oplog(args: &OplogArgs, cancel: CancellationToken) -> Result<Rendered> {
    let context = Context::one_shot(args.notify.notifier()?, store_display(&args.store), cancel);
    let options = context.refused(args.options(), |error| jobs::oplog::failure(&context, error)).await?;
    Ok(Rendered::of(&jobs::oplog::slice(&context, &options).await?))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn schedule_refuses_json_as_a_usage_error() {
        let schedule = Cli::try_parse_from(["ingest-backup", "schedule", "--json"]).expect("--json is global");
        assert_eq!(refuse_json(&schedule.command).unwrap_err().exit_code(), 2, "schedule prints no JSON");
        let backup = Cli::try_parse_from(["ingest-backup", "backup", "--json"]).expect("--json after the command");
        assert!(backup.json && refuse_json(&backup.command).is_ok());
        let before = Cli::try_parse_from(["ingest-backup", "--json", "list"]).expect("--json before the command");
        assert!(before.json);
    }
}
