//! Progress of a long operation (`backup`, `verify`, `restore`, `prune`) that a person
//! can watch: on a terminal a live display (one bar overall, one per namespace in
//! flight: documents, bytes, rate and ETA); elsewhere (CronJob logs, CI) one structured
//! log line every `--progress-interval` (10 s by default) with the same figures;
//! nothing with `--quiet`. `--json` output is never touched: progress goes to stderr.
//!
//! The operation counts into a [`Progress`] (cheap atomic adds from any thread); the
//! display runs on a thread of its own and reads the counters.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSettings {
    /// Show no progress at all.
    pub quiet: bool,
    /// Between two log lines when stderr is not a terminal.
    pub interval: Duration,
}

impl Default for ProgressSettings {
    fn default() -> Self {
        Self { quiet: false, interval: Duration::from_secs(10) }
    }
}

/// The settings of this process (`--quiet`, `--progress-interval`), set once by `main`.
fn process_settings() -> &'static OnceLock<ProgressSettings> {
    static SETTINGS: OnceLock<ProgressSettings> = OnceLock::new();
    &SETTINGS
}

/// Sets how this process shows progress (the first call wins).
pub fn configure(settings: ProgressSettings) {
    let _ = process_settings().set(settings);
}

/// The live display, while one runs: log lines are written around it (see
/// [`StderrAroundProgress`]) so they do not tear the bars.
fn live_display() -> &'static Mutex<Option<MultiProgress>> {
    static LIVE: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer for stderr that hides the live progress display while a log
/// line is written, then draws it again.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrAroundProgress;

impl std::io::Write for StderrAroundProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let live = live_display().lock().map(|guard| guard.clone()).unwrap_or(None);
        match live {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrAroundProgress {
    type Writer = StderrAroundProgress;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// One namespace's counters.
struct Item {
    name: String,
    documents: AtomicU64,
    bytes: AtomicU64,
    expected_bytes: Option<u64>,
    done: AtomicBool,
}

/// Counters shared by an operation and its display.
struct Shared {
    operation: &'static str,
    unit: &'static str,
    documents: AtomicU64,
    bytes: AtomicU64,
    expected_documents: AtomicU64,
    expected_bytes: AtomicU64,
    items: Mutex<Vec<Arc<Item>>>,
    started: Instant,
    stopped: AtomicBool,
}

/// The progress of one operation; clones count into the same totals.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Shared>,
}

/// One namespace (or object) in flight; counts into its operation's totals too.
#[derive(Clone)]
pub struct ItemProgress {
    item: Arc<Item>,
    shared: Arc<Shared>,
}

impl ItemProgress {
    /// Adds documents and bytes done.
    pub fn add(&self, documents: u64, bytes: u64) {
        self.item.documents.fetch_add(documents, Ordering::Relaxed);
        self.item.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.shared.documents.fetch_add(documents, Ordering::Relaxed);
        self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Takes the item's counts back out of the totals (an attempt that will be repeated).
    pub fn abandon(&self) {
        let documents = self.item.documents.swap(0, Ordering::Relaxed);
        let bytes = self.item.bytes.swap(0, Ordering::Relaxed);
        self.shared.documents.fetch_sub(documents.min(self.shared.documents.load(Ordering::Relaxed)), Ordering::Relaxed);
        self.shared.bytes.fetch_sub(bytes.min(self.shared.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// Marks the item finished (its bar leaves the display).
    pub fn finish(&self) {
        self.item.done.store(true, Ordering::Relaxed);
    }
}

impl Progress {
    /// Progress counting nothing to display (a library caller, a test).
    pub fn hidden(operation: &'static str) -> Self {
        Self::new(operation, "bytes")
    }

    fn new(operation: &'static str, unit: &'static str) -> Self {
        Self {
            shared: Arc::new(Shared {
                operation,
                unit,
                documents: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                expected_documents: AtomicU64::new(0),
                expected_bytes: AtomicU64::new(0),
                items: Mutex::new(Vec::new()),
                started: Instant::now(),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Starts showing the progress of `operation` as `settings` say; `unit` names what
    /// the byte counter counts (`bytes` of BSON, or `objects` for a prune). The display
    /// stops when the returned [`ProgressDisplay`] is dropped.
    pub fn show(operation: &'static str, unit: &'static str) -> (Self, ProgressDisplay) {
        Self::show_with(operation, unit, process_settings().get().copied().unwrap_or_default())
    }

    /// As [`Progress::show`], with explicit settings.
    pub fn show_with(operation: &'static str, unit: &'static str, settings: ProgressSettings) -> (Self, ProgressDisplay) {
        let progress = Self::new(operation, unit);
        if settings.quiet {
            let shared = progress.shared.clone();
            return (progress, ProgressDisplay { thread: None, shared });
        }
        let shared = progress.shared.clone();
        let terminal = std::io::stderr().is_terminal();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || if terminal { draw_live(&shared) } else { log_lines(&shared, settings.interval) })
            .ok();
        (progress.clone(), ProgressDisplay { thread, shared: progress.shared })
    }

    /// Sets what the whole operation is expected to do, when known (for rate and ETA).
    pub fn expect(&self, documents: Option<u64>, bytes: Option<u64>) {
        self.shared.expected_documents.store(documents.unwrap_or(0), Ordering::Relaxed);
        self.shared.expected_bytes.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// Adds to what the whole operation is expected to do.
    pub fn expect_more(&self, documents: u64, bytes: u64) {
        self.shared.expected_documents.fetch_add(documents, Ordering::Relaxed);
        self.shared.expected_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Starts an item (a namespace being read or written, an object being removed).
    pub fn item(&self, name: impl Into<String>, expected_bytes: Option<u64>) -> ItemProgress {
        let item = Arc::new(Item {
            name: name.into(),
            documents: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            expected_bytes,
            done: AtomicBool::new(false),
        });
        if let Ok(mut items) = self.shared.items.lock() {
            items.retain(|item| !item.done.load(Ordering::Relaxed));
            items.push(item.clone());
        }
        ItemProgress { item, shared: self.shared.clone() }
    }

    /// Documents and bytes done so far.
    pub fn done(&self) -> (u64, u64) {
        (self.shared.documents.load(Ordering::Relaxed), self.shared.bytes.load(Ordering::Relaxed))
    }
}

/// Keeps the display running; stops it (and clears the live bars) when dropped.
pub struct ProgressDisplay {
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The figures of one moment.
struct Figures {
    documents: u64,
    bytes: u64,
    expected_documents: Option<u64>,
    expected_bytes: Option<u64>,
    rate: f64,
    eta: Option<Duration>,
}

fn figures(shared: &Shared) -> Figures {
    let documents = shared.documents.load(Ordering::Relaxed);
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let expected_documents = Some(shared.expected_documents.load(Ordering::Relaxed)).filter(|n| *n > 0);
    let expected_bytes = Some(shared.expected_bytes.load(Ordering::Relaxed)).filter(|n| *n > 0);
    let elapsed = shared.started.elapsed().as_secs_f64().max(1e-3);
    let rate = bytes as f64 / elapsed;
    let eta =
        expected_bytes.filter(|_| rate > 0.0).and_then(|expected| Duration::try_from_secs_f64(expected.saturating_sub(bytes) as f64 / rate).ok());
    Figures { documents, bytes, expected_documents, expected_bytes, rate, eta }
}

/// Sleeps `total` in short steps; false once the display was stopped.
fn wait(shared: &Shared, total: Duration) -> bool {
    let step = Duration::from_millis(100);
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if shared.stopped.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(step.min(deadline.saturating_duration_since(Instant::now())));
    }
    !shared.stopped.load(Ordering::Relaxed)
}

/// One structured log line per interval, the first after one interval (a short
/// operation logs none).
fn log_lines(shared: &Shared, interval: Duration) {
    while wait(shared, interval) {
        let now = figures(shared);
        let active: Vec<String> = shared
            .items
            .lock()
            .map(|items| items.iter().filter(|item| !item.done.load(Ordering::Relaxed)).map(|item| item.name.clone()).collect())
            .unwrap_or_default();
        let percent = now.expected_bytes.map(|expected| (1000.0 * now.bytes as f64 / expected.max(1) as f64).round() / 10.0);
        info!(
            operation = shared.operation,
            documents = now.documents,
            expected_documents = now.expected_documents,
            done = now.bytes,
            expected = now.expected_bytes,
            unit = shared.unit,
            percent,
            rate_per_second = now.rate.round() as u64,
            eta_seconds = now.eta.map(|eta| eta.as_secs()),
            elapsed_seconds = shared.started.elapsed().as_secs(),
            in_flight = %active.join(", "),
            "Progress."
        );
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The live display on a terminal: an overall bar and one per item in flight.
fn draw_live(shared: &Shared) {
    /// Takes the display out of the log writer's way however the thread ends.
    struct Unregister;
    impl Drop for Unregister {
        fn drop(&mut self) {
            if let Ok(mut live) = live_display().lock() {
                *live = None;
            }
        }
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
    if let Ok(mut live) = live_display().lock() {
        *live = Some(multi.clone());
    }
    let _unregister = Unregister;
    let bytes_unit = shared.unit == "bytes";
    let overall_template = if bytes_unit {
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix:.bold} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}"
    };
    let overall = multi.add(ProgressBar::new(0).with_style(style(overall_template)).with_prefix(shared.operation));
    let mut bars: Vec<(Arc<Item>, ProgressBar)> = Vec::new();
    loop {
        let stopped = !wait(shared, Duration::from_millis(200));
        let now = figures(shared);
        overall.set_length(now.expected_bytes.unwrap_or(now.bytes).max(now.bytes));
        overall.set_position(now.bytes);
        overall.set_message(match now.expected_documents {
            Some(expected) => format!("{} of {expected} documents", now.documents),
            None if bytes_unit => format!("{} documents", now.documents),
            None => String::new(),
        });
        let items: Vec<Arc<Item>> = shared.items.lock().map(|items| items.clone()).unwrap_or_default();
        for item in items.iter().filter(|item| !item.done.load(Ordering::Relaxed)) {
            if !bars.iter().any(|(known, _)| Arc::ptr_eq(known, item)) {
                let bar = multi.add(
                    ProgressBar::new(item.expected_bytes.unwrap_or(0))
                        .with_style(style("  {prefix} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}"))
                        .with_prefix(item.name.clone()),
                );
                bars.push((item.clone(), bar));
            }
        }
        bars.retain(|(item, bar)| {
            let bytes = item.bytes.load(Ordering::Relaxed);
            bar.set_length(item.expected_bytes.unwrap_or(bytes).max(bytes));
            bar.set_position(bytes);
            bar.set_message(format!("{} documents", item.documents.load(Ordering::Relaxed)));
            if item.done.load(Ordering::Relaxed) || stopped {
                bar.finish_and_clear();
                multi.remove(bar);
                false
            } else {
                true
            }
        });
        if stopped {
            break;
        }
    }
    overall.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_count_into_the_totals_and_eta_follows_the_rate() {
        let progress = Progress::hidden("backup");
        progress.expect(Some(10), Some(1000));
        let one = progress.item("db.a", Some(600));
        let two = progress.item("db.b", Some(400));
        one.add(3, 300);
        two.add(2, 200);
        one.finish();
        assert_eq!(progress.done(), (5, 500));
        let now = figures(&progress.shared);
        assert_eq!((now.expected_documents, now.expected_bytes), (Some(10), Some(1000)));
        assert!(now.eta.is_some() && now.rate > 0.0);
        // A finished item leaves the list when the next one starts.
        let _three = progress.item("db.c", None);
        let names: Vec<String> = progress.shared.items.lock().unwrap().iter().map(|item| item.name.clone()).collect();
        assert_eq!(names, ["db.b", "db.c"]);
    }

    #[test]
    fn a_quiet_display_starts_no_thread_and_unknown_totals_have_no_eta() {
        let (progress, display) = Progress::show_with("restore", "bytes", ProgressSettings { quiet: true, interval: Duration::from_secs(1) });
        assert!(display.thread.is_none());
        progress.item("x", None).add(1, 10);
        assert!(figures(&progress.shared).eta.is_none());
    }
}
