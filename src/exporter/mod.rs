//! `exporter`: a long-running Prometheus exporter of what the store holds. Every
//! `--interval` it reads the store the way `list` does (the store is the truth, not
//! the jobs' own reports: a backup deleted by hand or a verification that never ran
//! shows here) and keeps the figures ([`figures`]) that `/metrics` serves, beside
//! `/healthz`. A reading that fails sets `ingest_backup_exporter_store_up` to 0 and
//! keeps the last figures out of the page, so that stale figures never look fresh.

pub mod figures;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::jobs::Render;
use crate::schedule::http::{self, MetricsPage, Probe};
use crate::store::s3::S3Settings;
use crate::store::{self, Store, StoreLocation};
use figures::{Figures, Reading};

/// Everything `exporter` needs, validated.
#[derive(Debug, Clone)]
pub struct ExporterOptions {
    /// The store read.
    pub store: StoreLocation,
    /// S3 settings, for an S3 store.
    pub s3: Option<S3Settings>,
    /// Where `/metrics` and `/healthz` are served.
    pub listen: SocketAddr,
    /// Time between two readings of the store.
    pub interval: Duration,
    /// Open uploads older than this are left by dead runs (not counted as in progress).
    pub stale_after: Duration,
}

/// The page: the last reading, rendered on each scrape.
#[derive(Debug, Default)]
struct ExporterPage {
    reading: Mutex<Reading>,
}

impl MetricsPage for ExporterPage {
    fn render(&self) -> String {
        figures::render(&self.reading.lock().expect("the reading lock is never poisoned"))
    }
}

/// How the exporter ended: the readings it made.
#[derive(Debug, Clone, Serialize)]
pub struct ExporterStopped {
    /// Readings of the store made.
    pub readings: u64,
    /// Of those, the ones that failed.
    pub failures: u64,
}

impl Render for ExporterStopped {
    fn text(&self) -> String {
        format!("exporter stopped after {} readings of the store ({} failed)\n", self.readings, self.failures)
    }
}

/// Serves the store's figures until `stop` is cancelled.
///
/// # Errors
/// A usage error when the address cannot be bound. A store that cannot be read
/// (unreachable, access denied, a missing bucket) is not an error: it is what
/// `ingest_backup_exporter_store_up` says, and the error is logged at each reading.
pub async fn run_exporter(options: ExporterOptions, stop: CancellationToken) -> Result<ExporterStopped> {
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|error| {
        Error::usage(format!(
            "--listen / EXPORTER_LISTEN {}: cannot listen there ({error}); choose a free address, e.g. 0.0.0.0:9091",
            options.listen
        ))
    })?;
    let page = Arc::new(ExporterPage::default());
    let alive = Arc::new(AtomicBool::new(true));
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, Probe { alive, metrics: page.clone() }, http_shutdown.clone()));
    info!(listen = %options.listen, store = %options.store, interval = %humantime::format_duration(options.interval), "Exporter started.");
    let mut store: Option<Store> = None;
    let mut stopped = ExporterStopped { readings: 0, failures: 0 };
    loop {
        let clock = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            result = read(&options, &mut store) => result,
        };
        stopped.readings += 1;
        let figures = match result {
            Ok(figures) => {
                info!(seconds = format!("{:.2}", clock.elapsed().as_secs_f64()), "Store read: {}.", figures::summary(&figures));
                Some(figures)
            }
            Err(error) => {
                warn!(%error, "Cannot read the store; ingest_backup_exporter_store_up is 0 until a reading succeeds.");
                stopped.failures += 1;
                None
            }
        };
        *page.reading.lock().expect("the reading lock is never poisoned") = Reading {
            up: figures.is_some(),
            figures,
            read_at: Some(Utc::now().timestamp_millis() as f64 / 1000.0),
            read_seconds: clock.elapsed().as_secs_f64(),
            failures: stopped.failures,
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(options.interval) => {}
        }
    }
    http_shutdown.cancel();
    let _ = server.await;
    info!(readings = stopped.readings, failures = stopped.failures, "Exporter stopped.");
    Ok(stopped)
}

/// One reading: the store opened when it is not yet, listed as `list` lists it, and
/// its open archive uploads counted.
async fn read(options: &ExporterOptions, store: &mut Option<Store>) -> Result<Figures> {
    if store.is_none() {
        *store = Some(store::open_with(&options.store, options.s3.clone()).await?);
    }
    let opened = store.as_ref().expect("opened above");
    let listing = crate::jobs::list::run(&options.store, opened, options.stale_after).await?;
    let in_progress = opened.in_progress().await?;
    let stale: std::collections::HashSet<&str> = listing.stale_uploads.iter().map(|upload| upload.key.as_str()).collect();
    let open_now = in_progress.iter().filter(|name| !stale.iter().any(|key| key.starts_with(&format!("{name}.")))).count();
    Ok(Figures::of(&listing, open_now as u64, Utc::now()))
}
