//! The workloads, the collected timings, and the table (plain text and Markdown) with the
//! ratios to Chronicle, the fractions of the machine's limits and the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::limits::{Limits, SEQUENTIAL_BYTES, SEQUENTIAL_LARGE_BYTES};
use crate::stats::Samples;

/// The engine every ratio is relative to.
pub const REFERENCE: &str = "chronicle";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Append128,
    Durable128,
    Batch128,
    Replay128,
    Reopen128,
    Append64K,
    Replay64K,
}

pub const WORKLOADS: [Workload; 7] = [
    Workload::Append128,
    Workload::Durable128,
    Workload::Batch128,
    Workload::Replay128,
    Workload::Reopen128,
    Workload::Append64K,
    Workload::Replay64K,
];

/// What a workload's figure is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    SequentialWrite,
    SequentialWriteLarge,
    FdatasyncSingle,
    FdatasyncBatch,
    PageCacheRead,
    None,
}

impl Workload {
    /// Records in the full run.
    pub fn records(self) -> u64 {
        match self {
            Workload::Append128 | Workload::Replay128 | Workload::Reopen128 => 1_000_000,
            Workload::Durable128 => 5_000,
            Workload::Batch128 => 200_000,
            Workload::Append64K | Workload::Replay64K => 10_000,
        }
    }

    pub fn record_bytes(self) -> usize {
        match self {
            Workload::Append64K | Workload::Replay64K => 64 << 10,
            _ => 128,
        }
    }

    /// Short name for the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Append128 => "append 128 B + sync",
            Workload::Durable128 => "durable append 128 B",
            Workload::Batch128 => "durable batch 100×128 B",
            Workload::Replay128 => "replay 128 B",
            Workload::Reopen128 => "reopen 1M-record log",
            Workload::Append64K => "append 64 KiB + sync",
            Workload::Replay64K => "replay 64 KiB",
        }
    }

    fn description(self, shrink: u64) -> String {
        let n = group(self.records() / shrink);
        match self {
            Workload::Append128 => format!("{n} × 128 B appends (no sync between), then one sync"),
            Workload::Durable128 => format!("{n} × 128 B appends, each durable before the next"),
            Workload::Batch128 => format!("{n} × 128 B in batches of 100, each batch durable"),
            Workload::Replay128 => {
                format!("open the {n}-record log afresh and read every record, comparing it")
            }
            Workload::Reopen128 => format!("open the {n}-record log, ready to append"),
            Workload::Append64K => format!("{n} × 64 KiB appends, then one sync"),
            Workload::Replay64K => {
                "open that log afresh and read every record, comparing it".to_string()
            }
        }
    }

    /// Whether the figure is a time (reopen) rather than a throughput.
    pub fn is_time(self) -> bool {
        self == Workload::Reopen128
    }

    fn limit(self) -> Limit {
        match self {
            Workload::Append128 => Limit::SequentialWrite,
            Workload::Append64K => Limit::SequentialWriteLarge,
            Workload::Durable128 => Limit::FdatasyncSingle,
            Workload::Batch128 => Limit::FdatasyncBatch,
            Workload::Replay128 | Workload::Replay64K => Limit::PageCacheRead,
            Workload::Reopen128 => Limit::None,
        }
    }
}

/// Timings of one engine on one workload: seconds per repetition, and any errors.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub seconds: Samples,
    pub errors: Vec<String>,
}

/// The machine the run happened on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The Chronicle source measured: its git commit, and whether `src/` had local changes.
    pub chronicle: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub filesystem: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The commit of the Chronicle tree this crate was built from (best effort: "unknown" without
/// git), marked "+ local changes" if `src/` differs from it.
fn chronicle_version() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--", "src"]).is_some_and(|s| !s.is_empty());
            format!("{commit}{}", if dirty { " + local changes in src/" } else { "" })
        }
        None => "unknown".into(),
    }
}

impl Machine {
    pub fn describe(dir: &Path) -> Machine {
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split(':').nth(1))
            .map_or_else(|| "unknown CPU".into(), |s| s.trim().to_string());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(|| "unknown".into(), |kb| format!("{:.0} GiB", kb as f64 / 1048576.0));
        let kernel = format!("Linux {}", read("/proc/sys/kernel/osrelease").trim());
        // The mount with the longest mount point that contains `dir`.
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let filesystem = read("/proc/mounts")
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() >= 4 && dir.starts_with(fields[1])).then(|| {
                    (fields[1].len(), format!("{} on {} ({})", fields[2], fields[0], fields[3]))
                })
            })
            .max_by_key(|(len, _)| *len)
            .map_or_else(|| "unknown".into(), |(_, fs)| fs);
        Machine { chronicle: chronicle_version(), cpu, cores, memory, kernel, filesystem }
    }

    pub fn summary(&self) -> String {
        format!(
            "chronicle {}; machine: {}, {} logical cores, {} RAM, {}; scratch filesystem: {}",
            self.chronicle, self.cpu, self.cores, self.memory, self.kernel, self.filesystem
        )
    }
}

pub struct Report {
    reps: usize,
    batch: usize,
    shrink: u64,
    pub limits: Limits,
    machine: Machine,
    outcomes: BTreeMap<(Workload, String), Outcome>,
    engines: Vec<String>,
    /// The event-store phase's figures (its own workloads, Chronicle and SQLite only).
    pub eventstore: crate::eventstore::Results,
}

pub struct Rendered {
    pub text: String,
    pub markdown: String,
}

/// One cell set of the table.
struct Row {
    workload: Workload,
    engine: String,
    figure: String,
    range: String,
    mb_per_s: String,
    latency: String,
    versus: String,
    of_limit: String,
    over_limit: bool,
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    group(value.round() as u64)
}

pub fn short_rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

impl Report {
    pub fn new(reps: usize, batch: usize, limits: Limits, machine: Machine, shrink: u64) -> Report {
        Report {
            reps,
            batch,
            shrink,
            limits,
            machine,
            outcomes: BTreeMap::new(),
            engines: Vec::new(),
            eventstore: crate::eventstore::Results::new(crate::eventstore::Plan::new(shrink)),
        }
    }

    pub fn reps(&self) -> usize {
        self.reps
    }

    pub fn outcome(&mut self, workload: Workload, engine: &str) -> &mut Outcome {
        if !self.engines.iter().any(|e| e == engine) {
            self.engines.push(engine.to_string());
        }
        self.outcomes.entry((workload, engine.to_string())).or_default()
    }

    /// The engines in table order: the reference first, then as they were first seen.
    pub fn engines(&self, order: &[&str]) -> Vec<String> {
        order.iter().map(|e| (*e).to_string()).filter(|e| self.engines.contains(e)).collect()
    }

    pub fn records(&self, workload: Workload) -> u64 {
        workload.records() / self.shrink
    }

    fn get(&self, workload: Workload, engine: &str) -> Option<&Outcome> {
        self.outcomes.get(&(workload, engine.to_string()))
    }

    /// Whether every run of every engine succeeded.
    pub fn all_ok(&self) -> bool {
        self.outcomes.values().all(|o| o.errors.is_empty() && !o.seconds.is_empty())
            && self.eventstore.all_ok()
    }

    /// Whether any of the log workloads (all but the event-store phase) ran.
    pub fn has_log_workloads(&self) -> bool {
        !self.outcomes.is_empty()
    }

    /// Median records per second (or, for a time workload, median seconds); `None` on error.
    pub fn median(&self, workload: Workload, engine: &str) -> Option<f64> {
        let outcome = self.get(workload, engine)?;
        if !outcome.errors.is_empty() || outcome.seconds.is_empty() {
            return None;
        }
        let secs = outcome.seconds.median();
        Some(if workload.is_time() { secs } else { self.records(workload) as f64 / secs })
    }

    /// Records per second over min..max (throughput) or seconds min..max (time).
    pub fn range(&self, workload: Workload, engine: &str) -> Option<(f64, f64)> {
        let outcome = self.get(workload, engine)?;
        if !outcome.errors.is_empty() || outcome.seconds.is_empty() {
            return None;
        }
        let (lo, hi) = (outcome.seconds.min(), outcome.seconds.max());
        let n = self.records(workload) as f64;
        Some(if workload.is_time() { (lo, hi) } else { (n / hi, n / lo) })
    }

    /// The engine's speed relative to the reference's (>1: faster than Chronicle).
    fn versus(&self, workload: Workload, engine: &str) -> Option<f64> {
        let mine = self.median(workload, engine)?;
        let reference = self.median(workload, REFERENCE)?;
        Some(if workload.is_time() { reference / mine } else { mine / reference })
    }

    /// The machine's limit for this workload, in records per second, if it has one: the best
    /// of the repetitions, since a limit is what the hardware was seen to do.
    fn limit_rate(&self, workload: Workload) -> Option<f64> {
        let bytes = workload.record_bytes() as f64;
        let limit = match workload.limit() {
            Limit::SequentialWrite => self.limits.sequential_write.max() * 1e6 / bytes,
            Limit::SequentialWriteLarge => self.limits.sequential_write_large.max() * 1e6 / bytes,
            Limit::FdatasyncSingle => self.limits.fdatasync_fallocated.max(),
            Limit::FdatasyncBatch => self.limits.batch_fdatasync.max(),
            Limit::PageCacheRead => self.limits.page_cache_read.max() * 1e6 / bytes,
            Limit::None => return None,
        };
        limit.is_finite().then_some(limit)
    }

    fn fraction_of_limit(&self, workload: Workload, engine: &str) -> Option<f64> {
        Some(self.median(workload, engine)? / self.limit_rate(workload)?)
    }

    /// Whether an engine's median beats what the hardware allows a durable write by more than
    /// noise, which only a sync that does not reach the disk can do. Durable appends and
    /// batches are held to the better of the fallocated and the already-written file (okaywal
    /// writes into zero-filled files) plus 10%; appends + sync to the sequential write
    /// bandwidth plus 25%, because this virtual disk's bandwidth varies from one minute to the
    /// next, while a sync that never reaches it runs at memory speed. Replays are not
    /// flagged: reading through a memory map can legitimately beat `read` into a buffer.
    fn beats_hardware(&self, workload: Workload, engine: &str) -> bool {
        let Some(median) = self.median(workload, engine) else { return false };
        let Some(limit) = self.limit_rate(workload) else { return false };
        let l = &self.limits;
        let bound = match workload.limit() {
            Limit::SequentialWrite | Limit::SequentialWriteLarge => limit * 1.25,
            Limit::FdatasyncSingle => {
                l.fdatasync_fallocated.max().max(l.fdatasync_overwrite.max()) * 1.1
            }
            Limit::FdatasyncBatch => {
                l.batch_fdatasync.max().max(l.batch_fdatasync_overwrite.max()) * 1.1
            }
            Limit::PageCacheRead | Limit::None => return false,
        };
        bound.is_finite() && median > bound
    }

    fn row(&self, workload: Workload, engine: &str) -> Row {
        let mut row = Row {
            workload,
            engine: engine.to_string(),
            figure: "FAILED".into(),
            range: String::new(),
            mb_per_s: String::new(),
            latency: String::new(),
            versus: String::new(),
            of_limit: String::new(),
            over_limit: false,
        };
        let (Some(median), Some((lo, hi))) =
            (self.median(workload, engine), self.range(workload, engine))
        else {
            return row;
        };
        if workload.is_time() {
            // Sub-millisecond times (a clean reopen) in microseconds, so they can be told apart.
            let (scale, unit) = if hi < 1e-3 { (1e6, "µs") } else { (1e3, "ms") };
            row.figure = format!("{:.1} {unit}", median * scale);
            row.range = format!("{:.1}–{:.1} {unit}", lo * scale, hi * scale);
        } else {
            row.figure = format!("{} rec/s", rate(median));
            row.range = format!("{}–{}", short_rate(lo), short_rate(hi));
            row.mb_per_s = format!("{:.1}", median * workload.record_bytes() as f64 / 1e6);
            match workload {
                Workload::Durable128 => row.latency = format!("{:.0} µs/append", 1e6 / median),
                Workload::Batch128 => {
                    row.latency = format!("{:.0} µs/batch", 1e6 * self.batch as f64 / median);
                }
                _ => {}
            }
        }
        if let Some(versus) = self.versus(workload, engine) {
            row.versus = format!("{versus:.2}×");
        }
        if let Some(fraction) = self.fraction_of_limit(workload, engine) {
            row.over_limit = self.beats_hardware(workload, engine);
            row.of_limit =
                format!("{:.0}%{}", fraction * 100.0, if row.over_limit { " (!)" } else { "" });
        }
        row
    }

    fn limits_lines(&self) -> Vec<(String, String)> {
        let l = &self.limits;
        let line = |s: &Samples, unit: &str, digits: usize| {
            format!(
                "best {:.*} {unit} (of {}; median {:.*}, min {:.*})",
                digits,
                s.max(),
                s.len(),
                digits,
                s.median(),
                digits,
                s.min()
            )
        };
        vec![
            (
                format!(
                    "sequential write of {} MiB, 1 MiB writes + final fdatasync",
                    SEQUENTIAL_BYTES >> 20
                ),
                line(&l.sequential_write, "MB/s", 0),
            ),
            (
                format!(
                    "sequential write of {} MiB, 1 MiB writes + final fdatasync",
                    SEQUENTIAL_LARGE_BYTES >> 20
                ),
                line(&l.sequential_write_large, "MB/s", 0),
            ),
            (
                "128 B pwrite + fdatasync, fallocated file".into(),
                line(&l.fdatasync_fallocated, "ops/s", 0),
            ),
            (
                "128 B pwrite + fdatasync, already-written file".into(),
                line(&l.fdatasync_overwrite, "ops/s", 0),
            ),
            (
                format!("{}×128 B pwrite + fdatasync, fallocated file", l.batch),
                line(&l.batch_fdatasync, "records/s", 0),
            ),
            (
                format!("{}×128 B pwrite + fdatasync, already-written file", l.batch),
                line(&l.batch_fdatasync_overwrite, "records/s", 0),
            ),
            (
                format!("page-cache read of {} MiB, 1 MiB reads", SEQUENTIAL_BYTES >> 20),
                line(&l.page_cache_read, "MB/s", 0),
            ),
        ]
    }

    /// The targets, each checked against the medians.
    fn targets(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let others: Vec<&String> = self.engines.iter().filter(|e| *e != REFERENCE).collect();
        for workload in WORKLOADS {
            if self.get(workload, REFERENCE).is_none() {
                continue;
            }
            let Some(mine) = self.median(workload, REFERENCE) else {
                lines.push(format!("{}: chronicle FAILED — target missed", workload.label()));
                continue;
            };
            // The fastest other engine, by speed.
            let best = others
                .iter()
                .filter_map(|e| self.median(workload, e).map(|m| (e.as_str(), m)))
                .max_by(|a, b| {
                    let (a, b) = if workload.is_time() { (b.1, a.1) } else { (a.1, b.1) };
                    a.total_cmp(&b)
                });
            let Some((best_name, best)) = best else { continue };
            let ratio = if workload.is_time() { best / mine } else { mine / best };
            let needed = match workload {
                Workload::Append128 | Workload::Replay128 | Workload::Replay64K => 2.0,
                _ => 1.0,
            };
            let verdict = if ratio >= needed { "met" } else { "MISSED" };
            lines.push(format!(
                "{}: chronicle {:.2}× the fastest other ({best_name}); target ≥ {needed:.0}× — {verdict}",
                workload.label(),
                ratio
            ));
        }
        if let Some(fraction) = self.fraction_of_limit(Workload::Durable128, REFERENCE) {
            let verdict = if fraction >= 0.9 { "met" } else { "MISSED" };
            lines.push(format!(
                "durable append 128 B: chronicle at {:.0}% of the machine's best fdatasync rate on \
                 a fallocated file; target ≥ 90% — {verdict}",
                fraction * 100.0
            ));
            let l = &self.limits;
            if let Some(mine) = self.median(Workload::Durable128, REFERENCE) {
                lines.push(format!(
                    "  (for reference: {:.0}% of the median fallocated rate; {:.0}% of the best \
                     and {:.0}% of the median rate on an already-written file)",
                    mine / l.fdatasync_fallocated.median() * 100.0,
                    mine / l.fdatasync_overwrite.max() * 100.0,
                    mine / l.fdatasync_overwrite.median() * 100.0
                ));
            }
        }
        lines
    }

    pub fn render(
        &self,
        order: &[&str],
        durability: &[(&str, &str)],
        runtime: Duration,
        command: &str,
    ) -> Rendered {
        let engines = self.engines(order);
        let rows: Vec<Row> = WORKLOADS
            .iter()
            .flat_map(|w| engines.iter().map(move |e| (*w, e)))
            .filter(|(w, e)| self.get(*w, e).is_some())
            .map(|(w, e)| self.row(w, e))
            .collect();
        let headers = [
            "workload",
            "engine",
            "median",
            "min–max",
            "MB/s",
            "latency",
            "vs chronicle",
            "of machine limit",
        ];
        let cells = |r: &Row| {
            [
                r.workload.label().to_string(),
                r.engine.clone(),
                r.figure.clone(),
                r.range.clone(),
                r.mb_per_s.clone(),
                r.latency.clone(),
                r.versus.clone(),
                r.of_limit.clone(),
            ]
        };
        let command_line = format!(
            "cargo run --release -p chronicle-compare{}",
            if command.is_empty() { String::new() } else { format!(" -- {command}") }
        );

        // Plain text.
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (i, cell) in cells(row).iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let pad = |s: &str, w: usize, right: bool| {
            let fill = " ".repeat(w.saturating_sub(s.chars().count()));
            if right {
                format!("{fill}{s}")
            } else {
                format!("{s}{fill}")
            }
        };
        let log_workloads = self.has_log_workloads();
        let eventstore =
            self.eventstore.ran().then(|| self.eventstore.render(&self.machine.chronicle));
        let mut text = String::new();
        let _ = writeln!(text, "{}", self.machine.summary());
        let _ = writeln!(text, "machine limits:");
        for (what, value) in self.limits_lines() {
            let _ = writeln!(text, "  {what}: {value}");
        }
        let _ = writeln!(text);
        if log_workloads {
            let line: Vec<String> =
                headers.iter().enumerate().map(|(i, h)| pad(h, widths[i], i >= 2)).collect();
            let _ = writeln!(text, "{}", line.join("  "));
            let mut previous = None;
            for row in &rows {
                if previous.is_some() && previous != Some(row.workload) {
                    let _ = writeln!(text);
                }
                previous = Some(row.workload);
                let line: Vec<String> =
                    cells(row).iter().enumerate().map(|(i, c)| pad(c, widths[i], i >= 2)).collect();
                let _ = writeln!(text, "{}", line.join("  "));
            }
            let _ = writeln!(text, "\nmedian and min–max over {} repetitions; MB/s counts payload bytes (10^6 B/s); \"vs chronicle\" is speed relative to Chronicle (>1 = faster).", self.reps);
            let _ = writeln!(text, "\ntargets:");
            for line in self.targets() {
                let _ = writeln!(text, "  {line}");
            }
            if rows.iter().any(|r| r.over_limit) {
                let _ = writeln!(text, "\n(!) faster than the hardware allows a durable write (beyond noise): that engine's sync cannot be reaching the disk.");
            }
        }
        if let Some((es_text, _)) = &eventstore {
            let _ = writeln!(text, "\n{es_text}");
        }

        // Markdown.
        let mut md = String::new();
        let _ = writeln!(md, "# Chronicle compared with other log engines\n");
        let _ = writeln!(
            md,
            "Produced by `{command_line}` (the crate in `benches/compare`) in {:.0} s. \
             Every workload ran {} times on every engine, interleaved (the order of the engines \
             rotates each repetition); figures are medians with the min–max range.\n",
            runtime.as_secs_f64(),
            self.reps
        );
        let _ = writeln!(
            md,
            "**Chronicle:** commit {}. **Machine:** {}, {} logical cores, {} RAM, {}; logs on \
             {}.\n",
            self.machine.chronicle,
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory,
            self.machine.kernel,
            self.machine.filesystem
        );
        if log_workloads {
            let _ = writeln!(md, "## Workloads\n");
            for workload in WORKLOADS {
                let _ = writeln!(
                    md,
                    "- **{}**: {}.",
                    workload.label(),
                    workload.description(self.shrink)
                );
            }
            let _ = writeln!(md, "\nReplays include opening the log and comparing every record with what was written (a memcmp against the expected bytes); the run exits non-zero if any record differs. The durable workloads' logs are also replayed and compared (untimed). The data is in the page cache when it is replayed. Between measurements every dirty page is flushed (`sync`), untimed.\n");
        }
        let _ = writeln!(md, "## The machine's limits\n");
        let _ = writeln!(md, "| measurement | result |\n|---|---|");
        for (what, value) in self.limits_lines() {
            let _ = writeln!(md, "| {what} | {value} |");
        }
        let _ = writeln!(
            md,
            "\nEach limit is the best of its repetitions (what the hardware was seen to do; this \
             virtual disk's speed varies from minute to minute). The \"of machine limit\" column \
             divides an engine's median by: the sequential write bandwidth of a write of about \
             the same size (appends + sync; payload bytes only, though Chronicle also writes a \
             32-byte frame header per record), the fdatasync rate on a fallocated file (durable \
             appends), the batch rate on a fallocated file (durable batches), the page-cache read \
             bandwidth with `read` (replays). (!) marks a write figure that beats the hardware \
             beyond noise, which only a sync that does not reach the disk can do: more than 10% \
             above the better of the fallocated and already-written rates for durable appends \
             and batches, more than 25% above the sequential bandwidth for appends + sync. \
             Replays are not marked: reading through a memory map skips the copy that `read` \
             makes, so it can exceed that figure.\n"
        );
        if log_workloads {
            let _ = writeln!(md, "## Results\n");
            let _ = writeln!(md, "| {} |", headers.join(" | "));
            let _ = writeln!(
                md,
                "|{}|",
                headers
                    .iter()
                    .enumerate()
                    .map(|(i, _)| if i >= 2 { "---:" } else { "---" })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for row in &rows {
                let mut c = cells(row);
                if row.engine == REFERENCE {
                    for cell in c.iter_mut().skip(1).take(2) {
                        *cell = format!("**{cell}**");
                    }
                }
                let _ = writeln!(md, "| {} |", c.join(" | "));
            }
            let _ = writeln!(md, "\n\"vs chronicle\" is the engine's speed relative to Chronicle's (above 1: faster than Chronicle). MB/s counts payload bytes, 10^6 bytes per second.\n");
            let _ = writeln!(md, "![Throughput by engine and workload](chart.svg)\n");
            let _ = writeln!(md, "## Targets from the issue\n");
            for line in self.targets() {
                let _ = writeln!(md, "- {}", line.trim_start());
            }
        }
        if let Some((_, es_markdown)) = &eventstore {
            let _ = writeln!(md, "{es_markdown}");
        }
        if log_workloads {
            let _ = writeln!(md, "## Where each engine's sync reaches the disk\n");
            for (engine, note) in durability {
                let _ = writeln!(md, "- **{engine}**: {note}");
            }
        }
        Rendered { text, markdown: md }
    }
}
