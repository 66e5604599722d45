//! The command line: raw flags (clap) and their validation into the options the
//! library takes. Nothing here talks to a server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::archive::Compression;
use crate::backup::BackupOptions;
use crate::crypto::sidecar::SidecarDetail;
use crate::crypto::{Identities, Recipients};
use crate::drill::DrillOptions;
use crate::error::{Error, Result};
use crate::exporter::ExporterOptions;
use crate::filter::{DatabaseRename, NamespaceFilter};
use crate::notify::Notifier;
use crate::pitr::slice_job::SliceOptions;
use crate::pitr::TargetTime;
use crate::prune::policy::Policy;
use crate::prune::PruneOptions;
use crate::restore::RestoreOptions;
use crate::retry::RetryPolicy;
use crate::schedule::cron::CronSchedule;
use crate::schedule::ScheduleOptions;
use crate::store::s3::S3Settings;
use crate::store::StoreLocation;
use crate::verify::VerifyOptions;

/// The source used when neither `--uri` nor `MONGO_URI` is given: the original ingest backup scripts'
/// Kubernetes service.
pub const DEFAULT_URI: &str = "mongodb://mongo-service:27017";

/// Back up MongoDB to a local directory or S3 in the mongodump layout, with a checksum manifest.
#[derive(Debug, Parser)]
#[command(name = "ingest-backup", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Show no progress and log only warnings and errors (RUST_LOG still decides when set).
    #[arg(long, short = 'q', global = true, env = "QUIET")]
    pub quiet: bool,
    /// When stderr is not a terminal, log one progress line this often (on a terminal the display is live).
    #[arg(long, global = true, env = "PROGRESS_INTERVAL", default_value = "10s", value_parser = parse_progress_interval, value_name = "DURATION")]
    pub progress_interval: std::time::Duration,
    /// Print one JSON document describing the result on stdout (human text goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long a store lock (of a backup, prune or slice) stays valid without a refresh; a run refreshes it every
    /// third of this, so the lock of a killed run is taken over after at most this long.
    #[arg(long, global = true, env = "INGEST_BACKUP_LOCK_TTL", default_value = "15m", value_parser = parse_lock_ttl, value_name = "DURATION", hide = true)]
    pub lock_ttl: Duration,
    /// The host name written into store locks, so that a person can find the run that holds one [default: /etc/hostname].
    #[arg(long, global = true, env = "HOSTNAME", value_name = "NAME", hide = true)]
    pub host_name: Option<String>,
}

impl Cli {
    /// The store-lock settings these flags give.
    pub fn lock_settings(&self) -> crate::store::lock::LockSettings {
        crate::store::lock::LockSettings {
            ttl: self.lock_ttl,
            host: self.host_name.clone().filter(|h| !h.trim().is_empty()).unwrap_or_else(crate::store::lock::host_name_of_this_machine),
        }
    }
}

/// `--lock-ttl`: a duration of at least one second.
fn parse_lock_ttl(value: &str) -> std::result::Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(ttl) if ttl >= Duration::from_secs(1) => Ok(ttl),
        Ok(_) => Err(format!("{value:?} is too short: give at least 1s (15m is the default)")),
        Err(error) => Err(format!("{value:?} is not a duration ({error}): give for example 15m")),
    }
}

/// `--progress-interval`: a duration of at least one second.
fn parse_progress_interval(value: &str) -> std::result::Result<std::time::Duration, String> {
    match humantime::parse_duration(value) {
        Ok(interval) if interval >= std::time::Duration::from_secs(1) => Ok(interval),
        Ok(_) => Err(format!("{value:?} is too short: give at least 1s, for example 10s or 1m")),
        Err(error) => Err(format!("{value:?} is not a duration ({error}): give for example 10s or 1m")),
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump every database (or the namespaces selected) into a new archive in the store.
    Backup(BackupArgs),
    /// List the backups in a store, newest first, complete or not, with their latest verification.
    List(ListArgs),
    /// Prove a stored backup intact (archive against manifest) and compare it with the live database.
    Verify(VerifyArgs),
    /// Restore a stored backup into a server: collections with their options, documents, indexes, views, then the oplog.
    Restore(RestoreArgs),
    /// Rehearse a restore: a stored backup (the newest verified one by default) into a scratch server, read back and checked against its manifest, the recovery time recorded beside the backup, then dropped.
    Drill(DrillArgs),
    /// Run forever: read the store every --interval and serve what it holds (newest complete and verified backups, point-in-time coverage, drills) as Prometheus metrics.
    Exporter(ExporterArgs),
    /// Load the sample ingest data set into a server (for demos, tests and benchmarks).
    SampleData(SampleDataArgs),
    /// Write one point-in-time slice of the oplog to the store: the entries since the last slice (or the newest backup).
    Oplog(OplogArgs),
    /// List drops, renames, index drops and bursts of deletes or updates in the stored oplog slices, each with the `restore --to-time` value just before it.
    Events(EventsArgs),
    /// Remove the backups a retention policy does not keep (never the newest complete or verified one), and leftovers of runs that died.
    Prune(PruneArgs),
    /// Run forever: a backup on every cron tick, verified after a delay; /healthz and /metrics over HTTP.
    Schedule(ScheduleArgs),
    /// Put an S3 legal hold on every object of a backup: kept whatever the retention policy says, until `release`.
    Hold(HoldArgs),
    /// Clear the legal hold that `hold` put on a backup; its retention lock (if any) still applies.
    Release(HoldArgs),
    /// Print the least-privilege IAM policy (JSON) of one job: backup, prune, verify, restore or drill.
    IamPolicy(IamPolicyArgs),
    /// Ask a running `schedule` for its /healthz (exit 0 when healthy): the container healthcheck of an image without curl.
    Healthcheck(HealthcheckArgs),
}

/// Flags of `hold` and `release`.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The backup (its name, as `list` shows it).
    pub backup: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
}

/// Flags of `iam-policy`.
#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// The job the policy is for.
    #[arg(long, value_parser = ["backup", "prune", "verify", "restore", "drill"])]
    pub role: String,
    /// The bucket [default: $S3_BUCKET].
    #[arg(long, env = "S3_BUCKET", hide_env = true)]
    pub bucket: String,
    /// The key prefix of the store in the bucket [default: $BACKUP_DIR].
    #[arg(long, env = "BACKUP_DIR", hide_env = true, default_value = "", hide_default_value = true)]
    pub prefix: String,
}

/// Flags of `healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address `schedule` listens on; 0.0.0.0 and [::] are asked on the loopback address.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:9090", value_name = "ADDR")]
    pub listen: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

impl HealthcheckArgs {
    /// The URL of `/healthz` on the listener.
    ///
    /// # Errors
    /// A usage error when `--listen` / `LISTEN_ADDR` is not IP:PORT.
    pub fn url(&self) -> Result<String> {
        let listen: SocketAddr = self
            .listen
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("--listen / LISTEN_ADDR {:?} is not an address: give IP:PORT, e.g. 0.0.0.0:9090", self.listen)))?;
        let ip = match listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Ok(format!("http://{}/healthz", SocketAddr::new(ip, listen.port())))
    }
}

/// `--spool-dir`: where every command stages what does not fit in memory (large
/// collections of a backup, oplog slices on their way to or from the store, a
/// restore's `oplog.bson`). One rule for all: the flag or `INGEST_BACKUP_SPOOL_DIR`,
/// else `ingest-backup-spool` in the system temporary directory; created when missing.
#[derive(Debug, Clone, Args)]
pub struct SpoolArg {
    /// Directory for spool files (large collections, oplog slices) [default: ingest-backup-spool in the system temp directory].
    #[arg(long, env = "INGEST_BACKUP_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

impl SpoolArg {
    /// The spool directory in force.
    pub fn dir(&self) -> PathBuf {
        self.spool_dir.clone().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or_else(|| std::env::temp_dir().join("ingest-backup-spool"))
    }
}

/// `--uri`, shared by the commands that talk to a server.
#[derive(Debug, Args)]
pub struct UriArg {
    /// MongoDB connection string [env: MONGO_URI; default: mongodb://mongo-service:27017]
    #[arg(long, env = "MONGO_URI", hide_env = true, hide_env_values = true, default_value = DEFAULT_URI, hide_default_value = true)]
    pub uri: String,
}

/// `--store`, shared by the commands that use a store.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, file:///abs/path or a directory [default: s3://$S3_BUCKET/$BACKUP_DIR when S3_BUCKET is set, else ./backups]
    #[arg(long)]
    pub store: Option<String>,
    /// S3 multipart part size in MiB (5-5120); memory is about part size x (parts in flight + 2).
    #[arg(long, default_value_t = 8)]
    pub part_size_mb: usize,
    /// S3 parts uploaded at once.
    #[arg(long, default_value_t = 4)]
    pub parts_in_flight: usize,
    /// S3 request checksums: when_supported (the AWS SDK's default, a CRC on every upload) or when_required (only
    /// where the API demands one, for S3-compatible servers that reject the default).
    #[arg(long, env = "S3_CHECKSUM", default_value = "when_supported", value_name = "WHEN")]
    pub s3_checksum: String,
}

impl StoreArg {
    /// The store this flag (or the original ingest backup scripts' environment variables) selects.
    ///
    /// # Errors
    /// A usage error for a malformed store or `S3_BUCKET`.
    pub fn location(&self) -> Result<StoreLocation> {
        match &self.store {
            Some(text) => StoreLocation::parse(text),
            None => StoreLocation::from_env(std::env::var("S3_BUCKET").ok().as_deref(), std::env::var("BACKUP_DIR").ok().as_deref()),
        }
    }

    /// The store and, for an S3 store, its settings.
    ///
    /// # Errors
    /// A usage error for a malformed store, flag or variable.
    pub fn resolve(&self) -> Result<(StoreLocation, Option<S3Settings>)> {
        let store = self.location()?;
        let s3 = match store {
            StoreLocation::S3 { .. } => Some(self.s3_settings()?),
            StoreLocation::Local(_) | StoreLocation::Gcs { .. } | StoreLocation::Azure { .. } => None,
        };
        Ok((store, s3))
    }

    /// The S3 settings: these flags plus the AWS and `S3_*` environment variables.
    ///
    /// # Errors
    /// A usage error naming a malformed flag or variable.
    pub fn s3_settings(&self) -> Result<S3Settings> {
        let mut settings = S3Settings::from_env(self.part_size_mb, self.parts_in_flight)?;
        settings.checksum = crate::store::s3::ChecksumPolicy::parse(&self.s3_checksum)?;
        Ok(settings)
    }
}

/// Where alerts go and when: shared by the commands that send alerts. Failures are
/// always reported to the configured channels. The URLs are credentials: give them in
/// the environment (a flag shows in the process list); their values never appear in
/// `--help`, logs or errors.
#[derive(Debug, Args)]
#[command(next_help_heading = "Alerts")]
pub struct NotifyArg {
    /// Also alert when the run succeeds, not only when it fails (true or false).
    #[arg(long, env = "NOTIFY_SUCCESS", value_name = "BOOL", value_parser = parse_notify_success, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", default_value = "false")]
    pub notify_success: bool,
    /// Slack incoming-webhook URL for alerts.
    #[arg(long, env = crate::notify::SLACK_WEBHOOK_URL, hide_env_values = true, value_name = "URL")]
    pub slack_webhook_url: Option<String>,
    /// Generic webhook URL for alerts (a JSON document per event).
    #[arg(long, env = crate::notify::ALERT_WEBHOOK_URL, hide_env_values = true, value_name = "URL")]
    pub alert_webhook_url: Option<String>,
    /// Heartbeat URL called on each success (`{operation}` is replaced by the operation's name).
    #[arg(long, env = crate::notify::HEARTBEAT_URL, hide_env_values = true, value_name = "URL")]
    pub heartbeat_url: Option<String>,
    /// How the heartbeat URL is called: GET or POST.
    #[arg(long, env = "HEARTBEAT_METHOD", value_name = "METHOD")]
    pub heartbeat_method: Option<String>,
}

/// `--notify-success` / `NOTIFY_SUCCESS`: a boolean word.
fn parse_notify_success(value: &str) -> std::result::Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" | "off" => Ok(false),
        "true" | "1" | "yes" | "on" => Ok(true),
        other => Err(format!("NOTIFY_SUCCESS / --notify-success {other:?} is not a boolean: use true or false")),
    }
}

impl NotifyArg {
    /// The alert channels these flags (or their variables) configure.
    ///
    /// # Errors
    /// A usage error naming a malformed setting (never showing a webhook URL).
    pub fn notifier(&self) -> Result<Notifier> {
        Notifier::from_lookup(self.notify_success, |name| match name {
            crate::notify::SLACK_WEBHOOK_URL => self.slack_webhook_url.clone(),
            crate::notify::ALERT_WEBHOOK_URL => self.alert_webhook_url.clone(),
            crate::notify::HEARTBEAT_URL => self.heartbeat_url.clone(),
            crate::notify::HEARTBEAT_METHOD => self.heartbeat_method.clone(),
            _ => None,
        })
    }
}

/// `--retries`, shared by the commands that read from or write to a server.
#[derive(Debug, Args)]
pub struct RetriesArg {
    /// Times an interrupted read (a collection, the oplog window, discovery, a live scan) is started again after a
    /// transient fault (a dropped connection, a failover), waiting 0.5 s, 1 s, 2 s, ... in between; 0 fails at once.
    #[arg(long, env = "BACKUP_RETRIES", default_value_t = crate::retry::DEFAULT_RETRIES, value_name = "N")]
    pub retries: u32,
}

impl RetriesArg {
    /// The retry policy of this flag.
    ///
    /// # Errors
    /// A usage error when `--retries` is over 20.
    pub fn policy(&self) -> Result<RetryPolicy> {
        if self.retries > 20 {
            return Err(Error::usage(format!("--retries {} is over 20: a fault that outlasts 20 retries is not transient", self.retries)));
        }
        Ok(RetryPolicy::new(self.retries))
    }
}

/// Flags of `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub flags: BackupFlags,
}

impl BackupArgs {
    /// Validates the flags into [`BackupOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<BackupOptions> {
        self.flags.options()
    }
}

/// What a backup is made of and where it goes: the flags `backup` and `schedule` share.
#[derive(Debug, Args)]
pub struct BackupFlags {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub uri: UriArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub notify: NotifyArg,
    /// Cursors open at the same time: whole collections, and the _id ranges of collections split by --split-min-mb.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Read a collection of at least this many MiB (collStats size) as --parallel _id ranges on parallel cursors,
    /// stored as one .bson in _id order (0: split every collection that can be).
    #[arg(long, env = "SPLIT_MIN_MB", default_value_t = 256, value_name = "MIB")]
    pub split_min_mb: u64,
    /// Archive compression.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Compression level (gzip 0-9, default 6; zstd 1-19, default 3).
    #[arg(long)]
    pub level: Option<i32>,
    /// Compression worker threads, shared by all collections (0: compress on the
    /// reader threads) [default: the CPUs available, at most 4].
    /// Archives are multi-member gzip or multi-frame zstd, one per 1 MiB block.
    #[arg(long, alias = "zstd-threads", env = "COMPRESS_THREADS")]
    pub compress_threads: Option<u32>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub namespaces: NamespaceArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
    /// MiB of one collection's compressed bytes kept in memory before it is spooled to disk.
    #[arg(long, default_value_t = 4)]
    pub spool_memory_mb: usize,
    /// Documents per cursor batch (0: the server's default).
    #[arg(long, default_value_t = 0)]
    pub batch_size: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retries: RetriesArg,
    /// After a successful backup, prune the store with the retention flags below (skipped, with a warning, while
    /// another prune holds the store).
    #[arg(long, env = "PRUNE_AFTER_BACKUP")]
    pub prune: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retention: RetentionFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub encryption: EncryptionFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub lock: LockArg,
}

/// S3 Object Lock of `backup` and `schedule`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Object Lock")]
pub struct LockArg {
    /// Write every object of each backup with an S3 Object Lock in this mode, governance or compliance (the bucket
    /// needs Object Lock; checked before the database is read). Verification records and oplog slices get their backup's lock.
    #[arg(long, env = "LOCK_MODE", value_name = "MODE")]
    pub lock_mode: Option<String>,
    /// How long a new backup is locked: whole days (7) or a duration with a unit (36h) [default: from the retention
    /// flags: --keep-within, else the shortest of the keep-hourly (N hours), keep-daily (N days) and keep-last windows].
    /// `prune` extends the lock of each backup it keeps to the end of the tier it fills.
    #[arg(long, env = "LOCK_DAYS", value_name = "DAYS", value_parser = parse_lock_days)]
    pub lock_days: Option<Duration>,
}

/// `--lock-days`: whole days, or a duration with a unit; at least one second.
fn parse_lock_days(value: &str) -> std::result::Result<Duration, String> {
    let value = value.trim();
    let parsed = match value.parse::<u64>() {
        Ok(days) => days.checked_mul(86_400).map(Duration::from_secs).ok_or_else(|| format!("{value} days is too long")),
        Err(_) => humantime::parse_duration(value)
            .map_err(|error| format!("{value:?} is neither a number of days nor a duration ({error}): give for example 30 or 36h")),
    }?;
    if parsed < Duration::from_secs(1) {
        return Err(format!("{value:?} would lock nothing: give at least 1 day (or 1s in a test)"));
    }
    Ok(parsed)
}

impl LockArg {
    /// The lock asked for, following `policy` when no `--lock-days` is given.
    ///
    /// # Errors
    /// A usage error for a mode other than governance or compliance, or a window too large.
    pub fn request(&self, policy: impl FnOnce() -> Result<Policy>) -> Result<Option<crate::immutable::LockRequest>> {
        let Some(text) = self.lock_mode.as_deref().map(str::trim).filter(|text| !text.is_empty()) else {
            if self.lock_days.is_some() {
                return Err(Error::usage("--lock-days (LOCK_DAYS) without --lock-mode locks nothing: give --lock-mode governance or compliance"));
            }
            return Ok(None);
        };
        let mode = crate::store::LockMode::parse(text).ok_or_else(|| {
            Error::usage(format!("--lock-mode / LOCK_MODE {text:?} is not a lock mode: give governance (a principal with s3:BypassGovernanceRetention can still remove it) or compliance (nobody can)"))
        })?;
        let window = self
            .lock_days
            .map(|days| chrono::Duration::from_std(days).map_err(|_| Error::usage("--lock-days is too large: give at most a few centuries")))
            .transpose()?;
        Ok(Some(crate::immutable::LockRequest { mode, window, policy: policy()? }))
    }
}

/// The age recipients of `backup` and `oplog`: public keys only, never a private key.
#[derive(Debug, Args)]
#[command(next_help_heading = "Encryption")]
pub struct RecipientsArg {
    /// Encrypt the archive with age to this public key (age1...); repeatable: any one recipient's identity decrypts.
    #[arg(long = "encrypt-to", value_name = "AGE_PUBLIC_KEY")]
    pub encrypt_to: Vec<String>,
    /// A file of age public keys, one per line (# comments and blank lines skipped), as `age -R` reads.
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,
    /// age public keys separated by commas or white space (added to --encrypt-to and --recipients-file).
    #[arg(long = "age-recipients", env = "AGE_RECIPIENTS", value_name = "KEYS", hide = true)]
    pub age_recipients: Option<String>,
}

impl RecipientsArg {
    /// The recipients given, if any.
    ///
    /// # Errors
    /// A usage error naming the position of a value that is not an age public key.
    pub fn resolve(&self) -> Result<Option<Recipients>> {
        Recipients::parse(&self.encrypt_to, self.recipients_file.as_deref(), self.age_recipients.as_deref())
    }
}

/// Client-side encryption of a backup: its recipients and what its sidecar shows.
#[derive(Debug, Args)]
pub struct EncryptionFlags {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub recipients: RecipientsArg,
    /// What the sidecar of an encrypted backup shows: `summary` (totals, recipients, the ciphertext's size and SHA-256;
    /// namespace names only inside the encryption) or `full` (every namespace in the clear, for `list` detail).
    #[arg(long, default_value = "summary", value_parser = ["summary", "full"])]
    pub sidecar_detail: String,
}

impl EncryptionFlags {
    /// The recipients given, if any, and the sidecar detail.
    ///
    /// # Errors
    /// A usage error naming the position of a value that is not an age public key.
    pub fn resolve(&self) -> Result<(Option<Recipients>, SidecarDetail)> {
        let recipients = self.recipients.resolve()?;
        let detail = if self.sidecar_detail == "full" { SidecarDetail::Full } else { SidecarDetail::Summary };
        if detail == SidecarDetail::Full && recipients.is_none() {
            return Err(Error::usage(
                "--sidecar-detail full applies to encrypted backups only: give --encrypt-to, --recipients-file or AGE_RECIPIENTS",
            ));
        }
        Ok((recipients, detail))
    }
}

/// `--identity`: the private key `verify` and `restore` decrypt an encrypted backup with.
#[derive(Debug, Args)]
pub struct IdentityArg {
    /// An age identity file (as `age-keygen -o` writes it) to decrypt encrypted backups with [or the key itself in AGE_IDENTITY].
    #[arg(long, env = "AGE_IDENTITY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

impl IdentityArg {
    /// The identities given: `--identity` / `AGE_IDENTITY_FILE`, else the key itself in
    /// `AGE_IDENTITY` (read here, never a flag: a key on a command line shows in `ps`).
    ///
    /// # Errors
    /// A usage error for an unreadable file or a line that is not a private key.
    pub fn resolve(&self) -> Result<Option<Arc<Identities>>> {
        let key = std::env::var("AGE_IDENTITY").ok();
        Ok(Identities::resolve(self.identity.as_deref(), key.as_deref())?.map(Arc::new))
    }
}

impl BackupFlags {
    /// The prune that follows each backup, when `--prune` is given.
    ///
    /// # Errors
    /// A usage error for a malformed retention flag, or `--prune` without any keep rule.
    pub fn prune_options(&self) -> Result<Option<PruneOptions>> {
        if !self.prune {
            return Ok(None);
        }
        let (store, s3) = self.store.resolve()?;
        let options = self.retention.options(store, s3, false)?;
        if options.policy.is_empty() {
            return Err(Error::usage(
                "--prune (PRUNE_AFTER_BACKUP) needs a retention policy: give at least one --keep-* flag (or PRUNE_KEEP_* variable)",
            ));
        }
        Ok(Some(options))
    }

    /// Validates the flags into [`BackupOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<BackupOptions> {
        check_parallel(self.parallel)?;
        if self.spool_memory_mb > 1024 {
            return Err(Error::usage("--spool-memory-mb is over 1024: a collection that large belongs on disk"));
        }
        let threads = self.compress_threads.unwrap_or_else(Compression::default_threads);
        if threads > 64 {
            return Err(Error::usage(format!("--compress-threads {threads} is over 64: use at most one per CPU")));
        }
        let compression = Compression::from_name(&self.compression, self.level)?.with_threads(threads);
        let (store, s3) = self.store.resolve()?;
        let (recipients, sidecar_detail) = self.encryption.resolve()?;
        Ok(BackupOptions {
            recipients,
            sidecar_detail,
            uri: self.uri.uri.clone(),
            store,
            s3,
            parallel: self.parallel,
            split_min_bytes: self.split_min_mb.saturating_mul(1 << 20),
            compression,
            filter: self.namespaces.filter()?,
            spool_dir: self.spool.dir(),
            spool_memory_limit: self.spool_memory_mb << 20,
            batch_size: self.batch_size,
            retry: self.retries.policy()?,
            lock: self.lock.request(|| self.retention.policy())?,
        })
    }
}

/// The retention policy: the flags `prune` shares with `backup --prune` and `schedule --prune`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retention (prune)")]
pub struct RetentionFlags {
    /// Keep the N newest backups.
    #[arg(long, env = "PRUNE_KEEP_LAST", value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, env = "PRUNE_KEEP_HOURLY", value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, env = "PRUNE_KEEP_DAILY", value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, env = "PRUNE_KEEP_WEEKLY", value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, env = "PRUNE_KEEP_MONTHLY", value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, env = "PRUNE_KEEP_YEARLY", value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup younger than this (e.g. 7d), whatever its verification says.
    #[arg(long, env = "PRUNE_KEEP_WITHIN", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keep_within: Option<Duration>,
    /// Keep what restoring to any moment of this window needs (e.g. 3d): the newest backup at or before its start and every later one.
    #[arg(long, env = "PRUNE_KEEP_PITR", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub keep_pitr: Option<Duration>,
    /// The IANA time zone that hours, days, weeks, months and years are counted in (e.g. Europe/Berlin).
    #[arg(long, env = "PRUNE_TIMEZONE", default_value = "UTC", value_name = "ZONE")]
    pub timezone: String,
    /// An incomplete archive (no sidecar) or an open upload older than this is a leftover of a run that died, and is removed.
    #[arg(long, env = "PRUNE_STALE_AFTER", default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stale_after: Duration,
}

impl RetentionFlags {
    /// The policy these flags give.
    ///
    /// # Errors
    /// A usage error naming a bad time zone or a duration too large.
    pub fn policy(&self) -> Result<Policy> {
        let timezone: chrono_tz::Tz = self.timezone.trim().parse().map_err(|_| {
            Error::usage(format!("--timezone / PRUNE_TIMEZONE {:?} is not an IANA time zone: use UTC or a name such as Europe/Berlin", self.timezone))
        })?;
        let duration = |flag: &str, value: Option<Duration>| {
            value
                .map(|d| chrono::Duration::from_std(d).map_err(|_| Error::usage(format!("{flag} is too large: give at most a few centuries"))))
                .transpose()
        };
        Ok(Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: duration("--keep-within", self.keep_within)?,
            keep_pitr: duration("--keep-pitr", self.keep_pitr)?,
            timezone,
        })
    }

    /// The prune of `store` with this policy.
    ///
    /// # Errors
    /// As [`RetentionFlags::policy`].
    pub fn options(&self, store: StoreLocation, s3: Option<S3Settings>, dry_run: bool) -> Result<PruneOptions> {
        Ok(PruneOptions { store, s3, policy: self.policy()?, stale_after: self.stale_after, dry_run })
    }
}

/// Flags of `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retention: RetentionFlags,
    /// Show what would be kept and removed; remove nothing.
    #[arg(long, env = "PRUNE_DRY_RUN")]
    pub dry_run: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub notify: NotifyArg,
}

impl PruneArgs {
    /// Validates the flags into [`PruneOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag or variable.
    pub fn options(&self) -> Result<PruneOptions> {
        let (store, s3) = self.store.resolve()?;
        self.retention.options(store, s3, self.dry_run)
    }
}

/// Flags of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Search from this point: RFC 3339 (2026-12-01T10:00:00Z) or an oplog timestamp T.I [default: the oldest slice].
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Search up to this point, included: RFC 3339 or T.I [default: the newest slice].
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub ns: NamespaceArg,
    /// The fewest documents deleted (or updated) in one namespace, each within a second of the one before or in one transaction, reported as a burst.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub burst: u64,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
}

impl EventsArgs {
    /// Validates the flags into [`crate::jobs::events::EventsOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<crate::jobs::events::EventsOptions> {
        if self.burst == 0 {
            return Err(Error::usage("--burst must be at least 1 (the fewest documents a burst of deletes or updates holds)"));
        }
        let point = |flag: &str, text: &Option<String>, start_of_second: bool| -> Result<Option<crate::oplog::timestamp::Timestamp>> {
            let Some(text) = text else { return Ok(None) };
            let mut ts = crate::pitr::TargetTime::parse(text).map_err(|e| Error::usage(e.to_string().replace("--to-time", flag)))?.0;
            if start_of_second && chrono::DateTime::parse_from_rfc3339(text.trim()).is_ok() {
                ts.i = 0;
            }
            Ok(Some(ts))
        };
        let (from, to) = (point("--from", &self.from, true)?, point("--to", &self.to, false)?);
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(Error::usage("--from is after --to: give the earlier point first"));
            }
        }
        Ok(crate::jobs::events::EventsOptions {
            from,
            to,
            filter: self.ns.filter()?,
            burst: self.burst,
            identities: self.identity.resolve()?,
            spool_dir: self.spool.dir(),
        })
    }
}

/// Flags of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Open uploads older than this are shown as a warning (a backup that died; `prune` removes them).
    #[arg(long, env = "PRUNE_STALE_AFTER", default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stale_after: Duration,
}

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup to verify: a name such as 2018-04-04T11_37, `latest` (the newest, complete or not), or `unverified` (the newest complete backup not verified yet).
    #[arg(default_value = "latest")]
    pub backup: String,
    /// While a backup of the store is still being written, wait up to this long for it before choosing the backup (e.g. 6h; 0: do not wait).
    #[arg(long, env = "VERIFY_WAIT_FOR_RUNNING", default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub wait_for_running: Duration,
    /// How often the store is checked while waiting for a running backup.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration, value_name = "DURATION", hide = true)]
    pub poll_interval: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub uri: UriArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Check the archive against its manifest only; do not compare with a live database. An encrypted backup without
    /// --identity is checked against its sidecar's size and SHA-256 only.
    #[arg(long)]
    pub archive_only: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArg,
    /// Live collections scanned at the same time (1 keeps the load on the server low).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Fail when a live difference cannot be explained either way (no oplog reaches back).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retries: RetriesArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub notify: NotifyArg,
    /// Check the point-in-time slices instead of a backup (encrypted slices are decrypted with --identity): every slice's hash and framing, the chains' continuity and
    /// their link to a backup; optionally only slices meeting FROM..TO (RFC 3339 or T.I, either side may be empty).
    #[arg(long, value_name = "FROM..TO", num_args = 0..=1, default_missing_value = "..")]
    pub pitr: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
}

impl VerifyArgs {
    /// Validates the flags into [`VerifyOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<VerifyOptions> {
        check_parallel(self.parallel)?;
        if self.backup != crate::store::UNVERIFIED {
            check_backup_name(&self.backup)?;
        }
        if self.poll_interval.is_zero() {
            return Err(Error::usage("--poll-interval must be more than 0s"));
        }
        let (store, s3) = self.store.resolve()?;
        Ok(VerifyOptions {
            store,
            s3,
            backup: self.backup.clone(),
            uri: (!self.archive_only).then(|| self.uri.uri.clone()),
            parallel: self.parallel,
            strict: self.strict,
            wait_for_running: self.wait_for_running,
            poll_interval: self.poll_interval,
            retry: self.retries.policy()?,
            identities: self.identity.resolve()?,
        })
    }
}

/// Flags of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup to restore: a name such as 2018-04-04T11_37, or `latest` (the newest complete backup).
    #[arg(default_value = "latest")]
    pub backup: String,
    /// The target server's connection string (required: a restore never defaults to the source) [env: RESTORE_URI]
    #[arg(long, value_name = "TARGET", env = "RESTORE_URI", hide_env = true, hide_env_values = true)]
    pub uri: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Drop each target collection before restoring it (otherwise existing documents are kept and duplicates reported).
    #[arg(long)]
    pub drop: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub namespaces: NamespaceArg,
    /// Restore database DB of the backup under the name given by --ns-to.
    #[arg(long = "ns-from", value_name = "DB")]
    pub ns_from: Option<String>,
    /// The new name of the --ns-from database.
    #[arg(long = "ns-to", value_name = "DB")]
    pub ns_to: Option<String>,
    /// Replay the backup's oplog.bson up to its consistency point (when it has one).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub oplog_replay: bool,
    /// Insert batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Documents per insert batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retries: RetriesArg,
    /// Restore an archive that has no sidecar manifest: a tarball made by the original mongodump + tar -czf pipeline. Nothing is checked against checksums.
    #[arg(long)]
    pub no_manifest: bool,
    /// With --no-manifest: the archive holds one database's directory (its <collection>.bson files), restored as database DB
    /// (as mongorestore --db DB with a database directory).
    #[arg(long = "db", value_name = "DB", requires = "no_manifest")]
    pub database_level: Option<String>,
    /// Restore the backup's users and roles too (admin.system.users and admin.system.roles; for a filtered restore, those of the
    /// restored databases), as mongorestore --restoreDbUsersAndRoles; with --drop they replace the target's.
    #[arg(long)]
    pub users_and_roles: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArg,
    /// Restore to this point in time: an RFC 3339 time (every write of that second included) or an oplog timestamp T.I.
    /// The newest backup at or before it is restored (or the one named), then its oplog slices are replayed up to it.
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
}

impl RestoreArgs {
    /// Validates the flags into [`RestoreOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<RestoreOptions> {
        check_insert_flags(self.parallel, self.batch_size)?;
        check_backup_name(&self.backup)?;
        if self.users_and_roles && self.ns_from.is_some() {
            return Err(Error::usage(
                "--users-and-roles cannot be combined with --ns-from/--ns-to: users and roles belong to their database's name; restore them without renaming",
            ));
        }
        let (store, s3) = self.store.resolve()?;
        Ok(RestoreOptions {
            store,
            s3,
            backup: self.backup.clone(),
            uri: self.uri.clone(),
            drop: self.drop,
            filter: self.namespaces.filter()?,
            rename: DatabaseRename::parse(self.ns_from.as_deref(), self.ns_to.as_deref())?,
            oplog_replay: self.oplog_replay,
            parallel: self.parallel,
            batch_documents: self.batch_size,
            no_manifest: self.no_manifest,
            database_level: self.database_level.as_deref().map(check_database_name).transpose()?,
            users_and_roles: self.users_and_roles,
            to_time: self.to_time.as_deref().map(TargetTime::parse).transpose()?,
            retry: self.retries.policy()?,
            spool_dir: self.spool.dir(),
            identities: self.identity.resolve()?,
        })
    }
}

/// Flags of `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The backup to drill: `verified` (the newest complete backup whose latest verification passed), `latest` (the newest complete backup) or a name such as 2018-04-04T11_37.
    #[arg(default_value = crate::drill::VERIFIED)]
    pub backup: String,
    /// The scratch server's connection string (required; never the backup's source: refused with exit 2) [env: DRILL_URI]
    #[arg(long, value_name = "SCRATCH", env = "DRILL_URI", hide_env = true, hide_env_values = true)]
    pub uri: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Drill a point-in-time restore: an RFC 3339 time or an oplog timestamp T.I (the base backup is the newest at or before it, or the one named).
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Leave the restored data on the scratch server (by default the drill drops everything it restored).
    #[arg(long)]
    pub keep: bool,
    /// Insert batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Documents per insert batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retries: RetriesArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub notify: NotifyArg,
}

impl DrillArgs {
    /// Validates the flags into [`DrillOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<DrillOptions> {
        check_insert_flags(self.parallel, self.batch_size)?;
        if self.backup != crate::drill::VERIFIED {
            check_backup_name(&self.backup)?;
        }
        if self.uri.trim().is_empty() {
            return Err(Error::usage("the scratch server is not set: give --uri or DRILL_URI (a server of its own, never the backed-up deployment)"));
        }
        let (store, s3) = self.store.resolve()?;
        let restore = RestoreOptions {
            store,
            s3,
            backup: self.backup.clone(),
            uri: self.uri.clone(),
            drop: false,
            filter: NamespaceFilter::new(&[], &[])?,
            rename: None,
            oplog_replay: true,
            parallel: self.parallel,
            batch_documents: self.batch_size,
            no_manifest: false,
            database_level: None,
            users_and_roles: false,
            to_time: self.to_time.as_deref().map(TargetTime::parse).transpose()?,
            retry: self.retries.policy()?,
            spool_dir: self.spool.dir(),
            identities: self.identity.resolve()?,
        };
        Ok(DrillOptions { restore, keep: self.keep })
    }
}

/// Flags of `exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    /// Address to serve /metrics and /healthz on.
    #[arg(long, env = "EXPORTER_LISTEN", default_value = "0.0.0.0:9091", value_name = "ADDR")]
    pub listen: String,
    /// How often the store is read.
    #[arg(long, env = "EXPORTER_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Open uploads older than this count as left by a dead run, not in progress.
    #[arg(long, env = "PRUNE_STALE_AFTER", default_value = "24h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub stale_after: Duration,
}

impl ExporterArgs {
    /// Validates the flags into [`ExporterOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag and its fix.
    pub fn options(&self) -> Result<ExporterOptions> {
        if self.interval < Duration::from_secs(1) {
            return Err(Error::usage(format!(
                "--interval {} is too short: give at least 1s (every read lists the whole store)",
                humantime::format_duration(self.interval)
            )));
        }
        let listen = self.listen.parse().map_err(|_| {
            Error::usage(format!(
                "--listen / EXPORTER_LISTEN {:?} is not an address: give IP:PORT, such as 0.0.0.0:9091 or 127.0.0.1:9091",
                self.listen
            ))
        })?;
        let (store, s3) = self.store.resolve()?;
        Ok(ExporterOptions { store, s3, listen, interval: self.interval, stale_after: self.stale_after })
    }
}

/// `--ns-include` / `--ns-exclude`: which namespaces a backup, restore or oplog slice covers.
#[derive(Debug, Args)]
pub struct NamespaceArg {
    /// Only namespaces matching this db.collection pattern ('*' is a wildcard); repeatable. For `restore`, of the
    /// backup; for `oplog`, give the backup's.
    #[arg(long = "ns-include", value_name = "PATTERN")]
    pub ns_include: Vec<String>,
    /// Skip namespaces matching this db.collection pattern; repeatable.
    #[arg(long = "ns-exclude", value_name = "PATTERN")]
    pub ns_exclude: Vec<String>,
}

impl NamespaceArg {
    /// The filter the patterns make.
    ///
    /// # Errors
    /// A usage error naming a malformed pattern.
    pub fn filter(&self) -> Result<NamespaceFilter> {
        NamespaceFilter::new(&self.ns_include, &self.ns_exclude)
    }
}

/// Flags of `oplog`.
#[derive(Debug, Args)]
pub struct OplogArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub uri: UriArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub store: StoreArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub namespaces: NamespaceArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub retries: RetriesArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub notify: NotifyArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub recipients: RecipientsArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub spool: SpoolArg,
}

impl OplogArgs {
    /// Validates the flags into [`SliceOptions`].
    ///
    /// # Errors
    /// A usage error naming the bad flag.
    pub fn options(&self) -> Result<SliceOptions> {
        let (store, s3) = self.store.resolve()?;
        Ok(SliceOptions {
            uri: self.uri.uri.clone(),
            store,
            s3,
            filter: self.namespaces.filter()?,
            retry: self.retries.policy()?,
            skip_without_backup: false,
            recipients: self.recipients.resolve()?,
            spool_dir: self.spool.dir(),
        })
    }
}

/// `--parallel` must be 1 to 64.
fn check_parallel(parallel: usize) -> Result<()> {
    if !(1..=64).contains(&parallel) {
        return Err(Error::usage(format!("--parallel {parallel} is out of range: use 1 to 64")));
    }
    Ok(())
}

/// `--parallel` and `--batch-size` of the commands that insert into a server (restore, drill).
fn check_insert_flags(parallel: usize, batch_size: usize) -> Result<()> {
    check_parallel(parallel)?;
    if !(1..=100_000).contains(&batch_size) {
        return Err(Error::usage(format!("--batch-size {batch_size} is out of range: use 1 to 100000")));
    }
    Ok(())
}

/// A backup argument is `latest` or a backup name.
fn check_backup_name(backup: &str) -> Result<()> {
    if backup != "latest" && !crate::naming::is_backup_name(backup) {
        return Err(Error::usage(format!(
            "{backup:?} is not a backup name: give a name such as 2018-04-04T11_37 (see `ingest-backup list`) or `latest` (verify also takes `unverified`)"
        )));
    }
    Ok(())
}

/// `--db`: a database name MongoDB accepts.
fn check_database_name(name: &str) -> Result<String> {
    if name.is_empty() || name.len() > 63 || name.contains(['.', '/', '\\', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0']) {
        return Err(Error::usage(format!(
            "--db {name:?} is not a database name: give 1 to 63 characters without . / \\ space \" $ * < > : | ? (for example --db ingest)"
        )));
    }
    Ok(name.to_string())
}

/// Flags of `schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// When to back up: 5 cron fields, or 6 with leading seconds, evaluated in UTC.
    #[arg(long, env = "CRON_SCHEDULE", default_value = crate::schedule::cron::DEFAULT_CRON, value_name = "EXPR")]
    pub cron: String,
    /// How long after a backup its verification starts (e.g. 30m, 90s).
    #[arg(long, env = "VERIFY_DELAY", default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub verify_delay: Duration,
    /// On SIGTERM/SIGINT, how long the current run may take to finish before it is aborted.
    #[arg(long, env = "GRACE_PERIOD", default_value = "25s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub grace_period: Duration,
    /// Address of the HTTP listener serving /healthz and /metrics.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:9090", value_name = "ADDR")]
    pub listen: String,
    /// Verify the archive against its manifest only, without the live comparison.
    #[arg(long)]
    pub verify_archive_only: bool,
    /// Live collections scanned at the same time by the verification.
    #[arg(long, default_value_t = 1)]
    pub verify_parallel: usize,
    /// Fail a verification when a live difference cannot be explained either way.
    #[arg(long)]
    pub verify_strict: bool,
    /// Start a backup as soon as the scheduler starts, then follow the schedule.
    #[arg(long, env = "RUN_ON_START")]
    pub run_now: bool,
    /// Point-in-time recovery: write an oplog slice this often (e.g. 60s, 10m), chained from the newest backup, so
    /// restore --to-time reaches within this much of now. Needs a replica set.
    #[arg(long, env = "OPLOG_EVERY", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub oplog_every: Option<Duration>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub backup: BackupFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArg,
}

impl ScheduleArgs {
    /// Validates every flag into [`ScheduleOptions`], so that a mistake stops the
    /// process before it listens or schedules anything.
    ///
    /// # Errors
    /// A usage error naming the bad flag or variable and its fix.
    pub fn options(&self) -> Result<ScheduleOptions> {
        let cron = CronSchedule::parse(&self.cron)?;
        let backup = self.backup.options()?;
        if !(1..=64).contains(&self.verify_parallel) {
            return Err(Error::usage(format!("--verify-parallel {} is out of range: use 1 to 64", self.verify_parallel)));
        }
        let listen: SocketAddr = self
            .listen
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("--listen / LISTEN_ADDR {:?} is not an address: give IP:PORT, e.g. 0.0.0.0:9090", self.listen)))?;
        let identities = self.identity.resolve()?;
        // Without the identity an encrypted backup's content cannot be read: its
        // verification checks the stored bytes against the sidecar only.
        let archive_only = self.verify_archive_only || (backup.recipients.is_some() && identities.is_none());
        let verify = VerifyOptions {
            identities,
            store: backup.store.clone(),
            s3: backup.s3.clone(),
            backup: "latest".into(),
            uri: (!archive_only).then(|| backup.uri.clone()),
            parallel: self.verify_parallel,
            strict: self.verify_strict,
            wait_for_running: Duration::ZERO,
            poll_interval: Duration::from_secs(15),
            retry: backup.retry,
        };
        let oplog = match self.oplog_every {
            None => None,
            Some(every) if every < Duration::from_secs(1) => {
                return Err(Error::usage(format!(
                    "--oplog-every / OPLOG_EVERY {} is too short: give at least 1s (60s or more is usual)",
                    humantime::format_duration(every)
                )))
            }
            Some(every) => Some(crate::schedule::OplogSchedule {
                every,
                slice: SliceOptions {
                    uri: backup.uri.clone(),
                    store: backup.store.clone(),
                    s3: backup.s3.clone(),
                    filter: backup.filter.clone(),
                    retry: backup.retry,
                    skip_without_backup: true,
                    recipients: backup.recipients.clone(),
                    spool_dir: backup.spool_dir.clone(),
                },
            }),
        };
        Ok(ScheduleOptions {
            cron,
            oplog,
            prune: self.backup.prune_options()?,
            backup,
            verify,
            verify_delay: self.verify_delay,
            grace_period: self.grace_period,
            listen,
            notifier: self.backup.notify.notifier()?,
            run_now: self.run_now,
        })
    }
}

/// Flags of `sample-data`.
#[derive(Debug, Args)]
pub struct SampleDataArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub uri: UriArg,
    /// Approximate size of the data set in MiB.
    #[arg(long, default_value_t = 50)]
    pub size_mb: u64,
    /// Database to load into.
    #[arg(long, default_value = "ingest")]
    pub database: String,
    /// Seed of the generator (same seed, same documents).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Load nothing when the server already holds a database other than admin, config and local.
    #[arg(long)]
    pub if_empty: bool,
    /// The server the documents must suit: `ferretdb` writes references as `{ref, id}`
    /// instead of DBRefs, since FerretDB v1 refuses `$`-prefixed field names.
    #[arg(long, value_enum, default_value_t = crate::sample::Compat::MongoDb)]
    pub compat: crate::sample::Compat,
}

impl SampleDataArgs {
    /// The data set these flags ask for.
    ///
    /// # Errors
    /// A usage error for a database name the server would refuse.
    pub fn spec(&self) -> Result<crate::sample::SampleSpec> {
        if self.database.is_empty() || self.database.contains(['.', '/', ' ', '$']) {
            return Err(Error::usage(format!("--database {:?} is not a valid database name", self.database)));
        }
        Ok(crate::sample::SampleSpec { database: self.database.clone(), target_bytes: self.size_mb << 20, seed: self.seed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_args(extra: &[&str]) -> Result<BackupOptions> {
        let mut argv = vec!["ingest-backup", "backup", "--store", "/tmp/x"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Backup(args) => args.options(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_product_contract() {
        let options = backup_args(&[]).unwrap();
        assert_eq!(options.parallel, 4);
        // COMPRESS_THREADS in the environment (as a CI runner might set) is the default's only override.
        let threads = std::env::var("COMPRESS_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or_else(Compression::default_threads);
        assert_eq!(options.compression, Compression::Gzip { level: 6, threads });
        assert_eq!(options.store, StoreLocation::Local("/tmp/x".into()));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert_eq!(backup_args(&["--parallel", "0"]).unwrap_err().exit_code(), 2);
        assert_eq!(backup_args(&["--ns-include", "nodot"]).unwrap_err().exit_code(), 2);
        assert_eq!(backup_args(&["--compression", "zstd", "--level", "40"]).unwrap_err().exit_code(), 2);
        assert!(Cli::try_parse_from(["ingest-backup", "backup", "--compression", "lz4"]).is_err());
        assert_eq!(backup_args(&["--compress-threads", "65"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn compress_threads_apply_to_either_compressor_and_keep_the_old_spelling() {
        let gzip = backup_args(&["--compress-threads", "0"]).unwrap();
        assert_eq!(gzip.compression, Compression::Gzip { level: 6, threads: 0 });
        let zstd = backup_args(&["--compression", "zstd", "--zstd-threads", "3"]).unwrap();
        assert_eq!(zstd.compression, Compression::Zstd { level: 3, threads: 3 });
    }

    fn schedule_args(extra: &[&str]) -> ScheduleArgs {
        let mut argv = vec!["ingest-backup", "schedule", "--store", "/tmp/x"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Schedule(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schedule_defaults_follow_the_original_scripts() {
        let options = schedule_args(&[]).options().unwrap();
        assert_eq!(options.cron.as_str(), "0 0 * * *");
        assert_eq!(options.verify_delay, Duration::from_secs(30 * 60));
        assert_eq!(options.grace_period, Duration::from_secs(25));
        assert_eq!(options.listen, "0.0.0.0:9090".parse::<SocketAddr>().unwrap());
        assert_eq!(options.verify.uri.as_deref(), Some(DEFAULT_URI), "verified against the backed-up server");
        assert_eq!(options.backup.parallel, 4);
        let archive_only = schedule_args(&["--verify-archive-only", "--verify-delay", "5s"]).options().unwrap();
        assert_eq!((archive_only.verify.uri, archive_only.verify_delay), (None, Duration::from_secs(5)));
    }

    #[test]
    fn bad_schedule_values_are_usage_errors() {
        assert_eq!(schedule_args(&["--listen", "localhost"]).options().unwrap_err().exit_code(), 2);
        assert_eq!(schedule_args(&["--cron", "* * *"]).options().unwrap_err().exit_code(), 2);
        assert_eq!(schedule_args(&["--verify-parallel", "0"]).options().unwrap_err().exit_code(), 2);
        assert!(Cli::try_parse_from(["ingest-backup", "schedule", "--verify-delay", "soon"]).is_err());
    }

    #[test]
    fn notify_success_is_a_backup_flag() {
        let Command::Backup(args) = Cli::try_parse_from(["ingest-backup", "backup", "--notify-success"]).unwrap().command else {
            panic!("backup");
        };
        assert!(args.flags.notify.notify_success);
    }
}
