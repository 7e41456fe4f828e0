//! The event-store phase's figures, and its section of the table (plain text and Markdown)
//! with the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{Plan, ENGINES};
use crate::report::{group, short_rate, REFERENCE};
use crate::stats::Samples;

/// The engine Chronicle is compared with here.
const OTHER: &str = "sqlite-wal";

/// One figure per repetition of each engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Events per second, appended then synced once.
    Buffered,
    /// Events per second in durable batches.
    Batches,
    /// The share of the batches' time the writing thread was blocked (waiting for syncs),
    /// and that time per batch.
    BatchBlockedShare,
    BatchBlockedEach,
    /// The share of the batches' time the writing thread waited for a CPU.
    BatchQueuedShare,
    /// Seconds per load of one aggregate, 50th and 99th percentile.
    LoadP50,
    LoadP99,
    /// Durable expected-version appends per second, threads on their own aggregates.
    Own,
    /// Appends per sync there (Chronicle's group commit).
    OwnPerSync,
    /// Successful durable appends per second, threads contending for the same aggregates.
    Contended,
    /// Conflicts as a share of all attempts there.
    ConflictShare,
    /// Chronicle alone: `append_sync` from one thread (per second; median latency), and from
    /// many (per second; 99th percentile latency; appends per sync).
    Sync1,
    Sync1P50,
    SyncMany,
    SyncManyP99,
    SyncManyPerSync,
    /// Within one repetition: appends/s of many threads over one's, and the many threads'
    /// 99th percentile latency over the single thread's median.
    SyncScaling,
    SyncTail,
}

/// How a metric's figure reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rate,
    Latency,
    Share,
    Count,
    Ratio,
}

impl Metric {
    fn kind(self) -> Kind {
        match self {
            Metric::Buffered
            | Metric::Batches
            | Metric::Own
            | Metric::Contended
            | Metric::Sync1
            | Metric::SyncMany => Kind::Rate,
            Metric::LoadP50
            | Metric::LoadP99
            | Metric::BatchBlockedEach
            | Metric::Sync1P50
            | Metric::SyncManyP99 => Kind::Latency,
            Metric::BatchBlockedShare | Metric::BatchQueuedShare | Metric::ConflictShare => {
                Kind::Share
            }
            Metric::OwnPerSync | Metric::SyncManyPerSync => Kind::Count,
            Metric::SyncScaling | Metric::SyncTail => Kind::Ratio,
        }
    }
}

/// The rows of the engines' table, in order, with their labels.
pub(super) const ROWS: [(Metric, &str); 11] = [
    (Metric::Buffered, "bulk, one sync at the end (events/s)"),
    (Metric::Batches, "bulk, durable batches of 100 (events/s)"),
    (Metric::BatchBlockedShare, "share of the batches' time waiting for the disk"),
    (Metric::BatchBlockedEach, "waiting for the disk, per batch"),
    (Metric::BatchQueuedShare, "share of the batches' time waiting for a CPU"),
    (Metric::LoadP50, "load one aggregate's 100 events, p50"),
    (Metric::LoadP99, "load one aggregate's 100 events, p99"),
    (Metric::Own, "8 threads, own aggregates, durable appends/s"),
    (Metric::OwnPerSync, "appends per sync there"),
    (Metric::Contended, "8 threads, 10 shared aggregates, successful appends/s"),
    (Metric::ConflictShare, "conflicts, share of attempts"),
];

/// What the phase measured, over the repetitions.
#[derive(Debug, Clone)]
pub struct Results {
    plan: Plan,
    figures: BTreeMap<(Metric, String), Samples>,
    errors: Vec<(String, String)>,
    runtime: Duration,
    reps: usize,
}

fn format(kind: Kind, value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    match kind {
        Kind::Rate => group(value.round() as u64),
        Kind::Latency => micros(value),
        Kind::Share => percent(value),
        Kind::Count => format!("{value:.1}"),
        Kind::Ratio => format!("{value:.2}×"),
    }
}

/// A share in percent, with a decimal below 10 % (a conflict rate of 0.4 % is not 0).
fn percent(share: f64) -> String {
    if share < 0.1 {
        format!("{:.1}%", share * 100.0)
    } else {
        format!("{:.0}%", share * 100.0)
    }
}

fn micros(seconds: f64) -> String {
    let us = seconds * 1e6;
    if us < 100.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.0} µs")
    }
}

fn format_range(kind: Kind, (lo, hi): (f64, f64)) -> String {
    match kind {
        Kind::Rate => format!("{}–{}", short_rate(lo), short_rate(hi)),
        Kind::Latency => format!("{}–{}", micros(lo).trim_end_matches(" µs"), micros(hi)),
        Kind::Share => format!("{}–{}", percent(lo).trim_end_matches('%'), percent(hi)),
        Kind::Count => format!("{lo:.1}–{hi:.1}"),
        Kind::Ratio => format!("{lo:.2}–{hi:.2}×"),
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

impl Results {
    pub fn new(plan: Plan) -> Results {
        Results {
            plan,
            figures: BTreeMap::new(),
            errors: Vec::new(),
            runtime: Duration::ZERO,
            reps: 0,
        }
    }

    pub fn push(&mut self, metric: Metric, engine: &str, value: f64) {
        self.figures.entry((metric, engine.to_string())).or_default().push(value);
    }

    pub fn error(&mut self, engine: &str, error: String) {
        self.errors.push((engine.to_string(), error));
    }

    /// Counts one repetition of the phase, which took `elapsed`.
    pub fn add_rep(&mut self, elapsed: Duration) {
        self.runtime += elapsed;
        self.reps += 1;
    }

    /// Whether the phase ran at all.
    pub fn ran(&self) -> bool {
        !self.figures.is_empty() || !self.errors.is_empty()
    }

    pub fn all_ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn samples(&self, metric: Metric, engine: &str) -> Option<&Samples> {
        if self.errors.iter().any(|(e, _)| e == engine) {
            return None;
        }
        self.figures.get(&(metric, engine.to_string())).filter(|s| !s.is_empty())
    }

    pub(super) fn median(&self, metric: Metric, engine: &str) -> Option<f64> {
        self.samples(metric, engine).map(Samples::median)
    }

    fn cell(&self, metric: Metric, engine: &str) -> (String, String) {
        if self.errors.iter().any(|(e, _)| e == engine) {
            return ("FAILED".into(), String::new());
        }
        match self.samples(metric, engine) {
            Some(s) => {
                (format(metric.kind(), s.median()), format_range(metric.kind(), (s.min(), s.max())))
            }
            None => ("—".into(), String::new()),
        }
    }

    /// Chronicle's speed over SQLite's (above 1: Chronicle faster), for rates and latencies.
    fn ratio(&self, metric: Metric) -> Option<f64> {
        let (mine, other) = (self.median(metric, REFERENCE)?, self.median(metric, OTHER)?);
        match metric.kind() {
            Kind::Rate => Some(mine / other),
            Kind::Latency => Some(other / mine),
            Kind::Share | Kind::Count | Kind::Ratio => None,
        }
    }

    /// The targets, each checked against the medians.
    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let against = |metric: Metric, what: &str, needed: f64, lines: &mut Vec<String>| {
            if let Some(ratio) = self.ratio(metric) {
                lines.push(format!(
                    "{what}: chronicle {ratio:.2}× SQLite's; target ≥ {needed:.0}× — {}",
                    verdict(ratio >= needed)
                ));
            }
        };
        against(Metric::Buffered, "bulk, one sync", 5.0, &mut lines);
        against(Metric::Batches, "bulk, durable batches of 100", 2.0, &mut lines);
        if let (Some(mine), Some(other)) =
            (self.median(Metric::LoadP50, REFERENCE), self.median(Metric::LoadP50, OTHER))
        {
            lines.push(format!(
                "load p50: chronicle {}, SQLite {}; target no slower than SQLite — {}",
                micros(mine),
                micros(other),
                verdict(mine <= other)
            ));
        }
        against(Metric::Own, "8 threads, own aggregates", 2.0, &mut lines);
        if let Some(ratio) = self.median(Metric::SyncScaling, REFERENCE) {
            lines.push(format!(
                "append_sync, {} threads vs 1: {ratio:.2}× the appends/s; target ≥ 6× — {}",
                self.plan.threads,
                verdict(ratio >= 6.0)
            ));
        }
        if let Some(ratio) = self.median(Metric::SyncTail, REFERENCE) {
            lines.push(format!(
                "append_sync, {} threads: p99 latency {ratio:.2}× the 1-thread median; target \
                 ≤ 3× — {}",
                self.plan.threads,
                verdict(ratio <= 3.0)
            ));
        }
        lines
    }

    fn workloads(&self) -> Vec<String> {
        let p = &self.plan;
        let events = group(p.spread.events);
        let aggregates = group(p.spread.aggregates);
        let per = p.spread.events_per_aggregate();
        let seconds = p.writers_duration.as_secs_f64();
        vec![
            format!(
                "**bulk, one sync**: {events} events over {aggregates} aggregates ({per} each; \
                 consecutive events go to aggregates far apart), one append call each, then one \
                 sync (SQLite: one transaction)"
            ),
            format!(
                "**bulk, durable batches**: the same events into a new store in batches of {}, \
                 each durable before the next (`append_batch_sync`; SQLite: a transaction per \
                 batch)",
                p.batch
            ),
            format!(
                "**load**: {} loads of a random aggregate's {per} events from the first store \
                 (after {} untimed), each timed: `EventLog::load_aggregate`; SQLite `SELECT \
                 version, event_type, payload … WHERE aggregate_id = ? ORDER BY version`, a \
                 search of the UNIQUE index (checked with EXPLAIN QUERY PLAN), rows copied out. \
                 The store is in the page cache",
                group(p.load_samples as u64),
                group(p.load_warmup as u64)
            ),
            format!(
                "**own aggregates**: {} threads for {seconds} s, each appending to {} aggregates \
                 of its own in turn, each event with the expected version and durable: \
                 `SharedEventLog::append_expecting_sync`; SQLite: a connection per thread, \
                 `BEGIN IMMEDIATE`, `SELECT max(version)`, `INSERT`, `COMMIT`",
                p.threads, p.own_aggregates
            ),
            format!(
                "**contended**: {} threads for {seconds} s on the same {} aggregates, each \
                 picking one at random: read its current version (`aggregate_version`; SQLite: \
                 `SELECT max(version)`), append expecting it as above; on a conflict count it \
                 and retry",
                p.threads, p.contended_aggregates
            ),
            format!(
                "**append_sync scaling** (Chronicle alone): `SharedEventLog::append_sync` from \
                 1 thread and from {} threads (an aggregate each), each into a store of its own, \
                 taking turns in {} slices of {} s, every call timed",
                p.threads,
                super::SCALING_SLICES,
                seconds / f64::from(super::SCALING_SLICES)
            ),
        ]
    }

    /// The phase's section: plain text for the terminal, Markdown for `results.md`.
    pub fn render(&self, chronicle: &str) -> (String, String) {
        let reps = self.reps;
        let mut text = String::new();
        let mut md = String::new();
        let engines: Vec<&str> = ENGINES.to_vec();

        let _ = writeln!(text, "event-store workload ({:.0} s):", self.runtime.as_secs_f64());
        let label_width = ROWS.iter().map(|(_, l)| l.chars().count()).max().unwrap_or(0);
        let _ = writeln!(
            text,
            "  {:label_width$}  {:>24}  {:>24}  {:>10}",
            "measurement", engines[0], engines[1], "chr/sqlite"
        );
        for (metric, label) in ROWS {
            let cells: Vec<String> = engines
                .iter()
                .map(|e| {
                    let (median, range) = self.cell(metric, e);
                    if range.is_empty() {
                        median
                    } else {
                        format!("{median} ({range})")
                    }
                })
                .collect();
            let ratio = self.ratio(metric).map_or(String::new(), |r| format!("{r:.2}×"));
            let pad = label_width - label.chars().count();
            let _ = writeln!(
                text,
                "  {label}{}  {:>24}  {:>24}  {ratio:>10}",
                " ".repeat(pad),
                cells[0],
                cells[1]
            );
        }
        let scaling = self.scaling_rows();
        for (label, one, many, ratio) in &scaling {
            let _ =
                writeln!(text, "  chronicle {label}: 1 thread {one}; 8 threads {many}; {ratio}");
        }
        for (engine, error) in &self.errors {
            let _ = writeln!(text, "  {engine} FAILED: {error}");
        }
        let _ = writeln!(text, "\nevent-store targets:");
        for line in self.targets() {
            let _ = writeln!(text, "  {line}");
        }

        let _ = writeln!(md, "## Event-store workload: Chronicle and SQLite\n");
        let _ = writeln!(
            md,
            "Chronicle's `EventLog` (`SharedEventLog` for many threads) against SQLite used as an \
             event store: one table `events(position INTEGER PRIMARY KEY, aggregate_id INTEGER, \
             version INTEGER, event_type TEXT, payload BLOB, UNIQUE(aggregate_id, version))`, \
             WAL mode, `synchronous=FULL`, `busy_timeout` 60 s; both durable at the same points. \
             Chronicle at commit {chronicle}; {reps} repetition(s), the engines' order \
             alternating; {:.0} s in this phase. Every event has a 128-byte payload. After every \
             workload the store is opened afresh and read back whole, and the run fails unless \
             it holds exactly the acknowledged events: each aggregate's versions 0, 1, 2, … \
             without a gap, each event's type and payload (and, with many writers, the writer) \
             as written.\n",
            self.runtime.as_secs_f64()
        );
        for line in self.workloads() {
            let _ = writeln!(md, "- {line}.");
        }
        let _ = writeln!(
            md,
            "\n| measurement | chronicle | min–max | sqlite-wal | min–max | chronicle vs SQLite |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for (metric, label) in ROWS {
            let (mine, mine_range) = self.cell(metric, engines[0]);
            let (other, other_range) = self.cell(metric, engines[1]);
            let ratio = self.ratio(metric).map_or(String::new(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                md,
                "| {label} | **{mine}** | {mine_range} | {other} | {other_range} | {ratio} |"
            );
        }
        let _ = writeln!(
            md,
            "\n\"chronicle vs SQLite\": Chronicle's speed over SQLite's (above 1: Chronicle \
             faster; for latencies, SQLite's over Chronicle's). Latencies: the percentile over \
             one repetition's loads, then the median (and range) over repetitions.\n"
        );
        let _ = writeln!(
            md,
            "Waiting for the disk: the time the thread appending the batches was asleep (the \
             scheduler's count for the thread, `/proc/thread-self/schedstat`: the elapsed time \
             less the time on a CPU and waiting for one), as a share of the batches' time and \
             per batch. A writer alone on its thread sleeps almost only in its syncs. Waiting \
             for a CPU: the thread's time in a run queue, while other processes (or the \
             engine's own background threads) had both cores.\n"
        );
        if !scaling.is_empty() {
            let _ = writeln!(
                md,
                "Chronicle alone, `SharedEventLog::append_sync`. The ratios are taken within each \
                 repetition (the single writer and the {} took turns, {} slices each), then their \
                 median over repetitions:\n",
                self.plan.threads,
                super::SCALING_SLICES
            );
            let _ = writeln!(md, "| | 1 thread | {} threads | ratio |", self.plan.threads);
            let _ = writeln!(md, "|---|---:|---:|---:|");
            for (label, one, many, ratio) in &scaling {
                let _ = writeln!(md, "| {label} | {one} | {many} | {ratio} |");
            }
            let _ = writeln!(md);
        }
        if !self.errors.is_empty() {
            for (engine, error) in &self.errors {
                let _ = writeln!(md, "- **{engine} FAILED**: {error}");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "Targets from the issue:\n");
        for line in self.targets() {
            let _ = writeln!(md, "- {line}");
        }
        (text, md)
    }

    /// The append_sync scaling rows: label, 1 thread, many threads, ratio.
    fn scaling_rows(&self) -> Vec<(String, String, String, String)> {
        let cell = |metric: Metric| {
            let (median, range) = self.cell(metric, REFERENCE);
            if range.is_empty() {
                median
            } else {
                format!("{median} ({range})")
            }
        };
        let mut rows = Vec::new();
        if self.median(Metric::SyncScaling, REFERENCE).is_some() {
            rows.push((
                "appends/s".into(),
                cell(Metric::Sync1),
                cell(Metric::SyncMany),
                cell(Metric::SyncScaling),
            ));
        }
        if self.median(Metric::SyncTail, REFERENCE).is_some() {
            rows.push((
                "latency: 1-thread median, many-thread p99".into(),
                cell(Metric::Sync1P50),
                cell(Metric::SyncManyP99),
                cell(Metric::SyncTail),
            ));
        }
        if self.median(Metric::SyncManyPerSync, REFERENCE).is_some() {
            rows.push((
                "appends per sync".into(),
                "1".into(),
                cell(Metric::SyncManyPerSync),
                String::new(),
            ));
        }
        rows
    }
}
