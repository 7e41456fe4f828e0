//! Runs the same workloads on Chronicle and on okaywal, commitlog, SQLite (WAL mode) and a naive
//! `BufWriter` + CRC log, in one process, together with measurements of the machine's own
//! limits, and prints one table (also written as Markdown, with an SVG chart).
//!
//! ```sh
//! cargo run --release -p chronicle-compare            # the full run: 7 repetitions, ~6 min
//! cargo run --release -p chronicle-compare -- --quick # a smoke run: 1/20 of the records
//! ```
//!
//! Options: `--reps N` (repetitions of every workload, default 7; the event-store phase runs
//! at most 3), `--quick`, `--engines a,b` (run only these engines, e.g. to profile one),
//! `--phases small,durable,batches,large,eventstore` (run only these groups of workloads;
//! `eventstore` is Chronicle's event log against SQLite as an event store, see
//! [`eventstore`]), `--skip-limits` (no machine measurements, for profiling), `--out DIR`
//! (where `results.md` and `chart.svg` go; default: this crate's directory; a run without the
//! log workloads writes no chart).
//!
//! Exits with status 1 if any engine fails or any replay returns records different from what
//! was written.

mod chart;
mod engines;
mod eventstore;
mod limits;
mod report;
mod stats;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use engines::{Engine, Res, Writer};
use report::{Outcome, Report, Workload};
use workload::{Plan, Pool, Verifier};

/// Records per batch in the durable-batch workload.
const BATCH: usize = 100;

/// Flushes every dirty page of the machine and commits the filesystem journal, so that one
/// measurement does not pay for the writeback (or the discards of deleted files) of the one
/// before. Never inside a timed region.
pub fn settle() {
    rustix::fs::sync();
}

#[derive(Debug, Clone)]
struct Config {
    reps: usize,
    /// Divides every workload's record count (1 for the full run).
    shrink: u64,
    out: PathBuf,
    /// Engines to run (all if empty), for profiling one engine at a time.
    engines: Vec<String>,
    /// Phases to run (all if empty).
    phases: Vec<String>,
    /// Skip the machine-limit measurements (for profiling an engine).
    skip_limits: bool,
}

impl Config {
    fn from_args() -> Result<Config, String> {
        let mut config = Config {
            reps: 7,
            shrink: 1,
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            engines: Vec::new(),
            phases: Vec::new(),
            skip_limits: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--reps" => {
                    config.reps = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n| n > 0)
                        .ok_or("--reps needs a positive number")?;
                }
                "--quick" => {
                    config.shrink = 20;
                    config.reps = 1;
                }
                "--engines" => {
                    let list = args.next().ok_or("--engines needs a comma-separated list")?;
                    config.engines = list.split(',').map(str::to_string).collect();
                    if let Some(unknown) =
                        config.engines.iter().find(|e| !ENGINES.iter().any(|(n, _, _)| n == e))
                    {
                        return Err(format!("unknown engine {unknown:?}"));
                    }
                }
                "--phases" => {
                    let list = args.next().ok_or("--phases needs a comma-separated list")?;
                    config.phases = list.split(',').map(str::to_lowercase).collect();
                    if let Some(unknown) = config
                        .phases
                        .iter()
                        .find(|p| !PHASES.iter().any(|q| format!("{q:?}").to_lowercase() == **p))
                    {
                        return Err(format!("unknown phase {unknown:?}"));
                    }
                }
                "--skip-limits" => config.skip_limits = true,
                "--out" => config.out = PathBuf::from(args.next().ok_or("--out needs a path")?),
                "-h" | "--help" => {
                    return Err("usage: chronicle-compare [--reps N] [--quick] [--engines a,b] [--phases small,durable,batches,large,eventstore] [--skip-limits] [--out DIR]".into())
                }
                other => return Err(format!("unknown argument {other:?}; try --help")),
            }
        }
        Ok(config)
    }

    fn plan(&self, workload: Workload) -> Plan {
        Plan {
            records: workload.records() / self.shrink,
            record_bytes: workload.record_bytes(),
            syncs_often: matches!(workload, Workload::Durable128 | Workload::Batch128),
        }
    }
}

/// The groups of workloads that share one log.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// 1M × 128 B appended then synced; the same log is reopened and replayed.
    Small,
    /// 5,000 × 128 B, each durable.
    Durable,
    /// 200,000 × 128 B in durable batches of 100.
    Batches,
    /// 10,000 × 64 KiB appended then synced, then replayed.
    Large,
    /// Chronicle's event log against SQLite as an event store (Chronicle and SQLite only).
    EventStore,
}

const PHASES: [Phase; 5] =
    [Phase::Small, Phase::Durable, Phase::Batches, Phase::Large, Phase::EventStore];

struct Runner {
    config: Config,
    root: PathBuf,
    report: Report,
}

type PhaseFn = fn(&mut Runner, Phase, usize);

/// The engines, in table order, each with the function that runs a phase on it.
const ENGINES: [(&str, &str, PhaseFn); 5] = [
    (
        engines::chronicle::Chronicle::NAME,
        engines::chronicle::Chronicle::DURABILITY,
        run::<engines::chronicle::Chronicle>,
    ),
    (
        engines::okaywal::OkayWal::NAME,
        engines::okaywal::OkayWal::DURABILITY,
        run::<engines::okaywal::OkayWal>,
    ),
    (
        engines::commitlog::Commitlog::NAME,
        engines::commitlog::Commitlog::DURABILITY,
        run::<engines::commitlog::Commitlog>,
    ),
    (
        engines::sqlite::Sqlite::NAME,
        engines::sqlite::Sqlite::DURABILITY,
        run::<engines::sqlite::Sqlite>,
    ),
    (
        engines::baseline::Baseline::NAME,
        engines::baseline::Baseline::DURABILITY,
        run::<engines::baseline::Baseline>,
    ),
];

fn seconds<T>(work: impl FnOnce() -> Res<T>) -> Res<(T, f64)> {
    let start = Instant::now();
    let value = work()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

/// Replays the log in `dir` and checks it holds exactly `plan`'s records; returns the seconds
/// taken (open included).
fn replay_checked<E: Engine>(dir: &Path, plan: &Plan, pool: &Pool) -> Res<f64> {
    let mut verifier = Verifier::new(pool.clone());
    let ((), secs) = seconds(|| E::replay(dir, plan, &mut verifier))?;
    verifier.finish(plan.records).map_err(|reason| format!("replay differs: {reason}"))?;
    Ok(secs)
}

/// Runs one phase on engine `E` and records its timings (or its error).
fn run<E: Engine>(runner: &mut Runner, phase: Phase, rep: usize) {
    let dir = runner.root.join(format!("{}-{phase:?}-{rep}", E::NAME));
    let result = std::fs::create_dir(&dir)
        .map_err(Into::into)
        .and_then(|()| run_phase::<E>(runner, phase, &dir));
    if let Err(err) = result {
        let workloads = phase_workloads(phase);
        eprintln!("  {} {phase:?}: FAILED: {err}", E::NAME);
        for workload in workloads {
            runner.report.outcome(*workload, E::NAME).errors.push(err.to_string());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    settle();
}

fn phase_workloads(phase: Phase) -> &'static [Workload] {
    match phase {
        Phase::Small => &[Workload::Append128, Workload::Reopen128, Workload::Replay128],
        Phase::Durable => &[Workload::Durable128],
        Phase::Batches => &[Workload::Batch128],
        Phase::Large => &[Workload::Append64K, Workload::Replay64K],
        Phase::EventStore => &[],
    }
}

fn record(runner: &mut Runner, workload: Workload, engine: &str, secs: f64) {
    let outcome: &mut Outcome = runner.report.outcome(workload, engine);
    outcome.seconds.push(secs);
}

fn run_phase<E: Engine>(runner: &mut Runner, phase: Phase, dir: &Path) -> Res<()> {
    match phase {
        Phase::Small | Phase::Large => {
            let (append, replay) = match phase {
                Phase::Small => (Workload::Append128, Workload::Replay128),
                _ => (Workload::Append64K, Workload::Replay64K),
            };
            let plan = runner.config.plan(append);
            let mut pool = Pool::new(plan.record_bytes, 1);
            let mut writer = E::create(dir, &plan)?;
            settle();
            let ((), secs) = seconds(|| writer.append_then_sync(&mut pool, 0..plan.records))?;
            record(runner, append, E::NAME, secs);
            writer.close()?;
            if let Phase::Small = phase {
                settle();
                let (writer, secs) = seconds(|| E::reopen(dir, &plan))?;
                record(runner, Workload::Reopen128, E::NAME, secs);
                writer.close()?;
            }
            settle();
            let secs = replay_checked::<E>(dir, &plan, &pool)?;
            record(runner, replay, E::NAME, secs);
        }
        Phase::Durable | Phase::Batches => {
            let workload = match phase {
                Phase::Durable => Workload::Durable128,
                _ => Workload::Batch128,
            };
            let plan = runner.config.plan(workload);
            let mut pool = Pool::new(plan.record_bytes, 2);
            let mut writer = E::create(dir, &plan)?;
            settle();
            let ((), secs) = seconds(|| match phase {
                Phase::Durable => writer.append_each_durable(&mut pool, 0..plan.records),
                _ => writer.append_batches_durable(&mut pool, 0..plan.records, BATCH),
            })?;
            record(runner, workload, E::NAME, secs);
            writer.close()?;
            // Not timed: check that what was acknowledged reads back.
            replay_checked::<E>(dir, &plan, &pool)?;
        }
        Phase::EventStore => return Err("the event-store phase has its own runner".into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let config = match Config::from_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match main_with(config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Removes the scratch directory however the run ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main_with(mut config: Config) -> Res<bool> {
    if config.phases.iter().all(|p| p == "eventstore") && !config.phases.is_empty() {
        // Nothing else would run in the later repetitions but the machine's limits.
        config.reps = config.reps.min(eventstore::REPS_MAX);
    }
    let started = Instant::now();
    let root = std::env::temp_dir().join(format!("chronicle-compare-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let scratch = Scratch(root.clone());
    let machine = report::Machine::describe(&root);
    println!(
        "chronicle-compare: {} repetition(s), scratch directory {}",
        config.reps,
        root.display()
    );
    println!("{}", machine.summary());

    let limits = limits::Limits { batch: BATCH, ..limits::Limits::default() };

    let mut runner = Runner {
        report: Report::new(config.reps, BATCH, limits, machine, config.shrink),
        config,
        root: root.clone(),
    };
    let sync_ops = 2000 / runner.config.shrink.min(4);
    for rep in 0..runner.config.reps {
        if !runner.config.skip_limits {
            // The machine's limits, on the same filesystem, once per repetition.
            let limits_started = Instant::now();
            limits::measure_into(&mut runner.report.limits, &root, sync_ops)?;
            println!(
                "  rep {}/{} machine limits: {:.1} s",
                rep + 1,
                runner.config.reps,
                limits_started.elapsed().as_secs_f64()
            );
        }
        for phase in PHASES {
            let name = format!("{phase:?}").to_lowercase();
            if !runner.config.phases.is_empty() && !runner.config.phases.contains(&name) {
                continue;
            }
            if let Phase::EventStore = phase {
                if rep >= eventstore::REPS_MAX {
                    continue;
                }
                let plan = eventstore::Plan::new(runner.config.shrink);
                println!("  rep {}/{} EventStore:", rep + 1, runner.config.reps);
                eventstore::run_rep(
                    &mut runner.report.eventstore,
                    &root,
                    &plan,
                    &runner.config.engines,
                    rep,
                );
                continue;
            }
            // Rotate the order of the engines from one repetition to the next.
            for k in 0..ENGINES.len() {
                let (name, _, run_fn) = ENGINES[(k + rep) % ENGINES.len()];
                if !runner.config.engines.is_empty()
                    && !runner.config.engines.iter().any(|e| e == name)
                {
                    continue;
                }
                let phase_started = Instant::now();
                run_fn(&mut runner, phase, rep);
                println!(
                    "  rep {}/{} {phase:?} {name}: {:.1} s",
                    rep + 1,
                    runner.config.reps,
                    phase_started.elapsed().as_secs_f64()
                );
            }
        }
    }
    drop(scratch);

    let runtime = started.elapsed();
    let durability: Vec<(&str, &str)> = ENGINES.iter().map(|(n, d, _)| (*n, *d)).collect();
    let order: Vec<&str> = ENGINES.iter().map(|(n, _, _)| *n).collect();
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let rendered = runner.report.render(&order, &durability, runtime, &command);
    println!("\n{}", rendered.text);

    std::fs::create_dir_all(&runner.config.out)?;
    let markdown_path = runner.config.out.join("results.md");
    std::fs::write(&markdown_path, &rendered.markdown)?;
    if runner.report.has_log_workloads() {
        let chart_path = runner.config.out.join("chart.svg");
        chart::draw(&runner.report, &order, &chart_path)?;
        println!("wrote {} and {}", markdown_path.display(), chart_path.display());
    } else {
        println!("wrote {} (no log workloads ran: no chart)", markdown_path.display());
    }
    println!("total runtime {:.0} s", runtime.as_secs_f64());
    Ok(runner.report.all_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engines::Writer;

    /// Every engine writes, reopens and replays a small log through the same code the
    /// benchmark uses (with the settings of both kinds of plan), and a replay of a damaged
    /// payload is caught.
    fn round_trip<E: Engine>() {
        round_trip_with::<E>(false);
        round_trip_with::<E>(true);
    }

    fn round_trip_with<E: Engine>(syncs_often: bool) {
        let dir = tempdir();
        let plan = Plan { records: 500, record_bytes: 128, syncs_often };
        let mut pool = Pool::new(plan.record_bytes, 9);
        let mut writer = E::create(&dir.0, &plan).unwrap();
        writer.append_then_sync(&mut pool, 0..200).unwrap();
        writer.append_each_durable(&mut pool, 200..210).unwrap();
        writer.append_batches_durable(&mut pool, 210..500, 100).unwrap();
        writer.close().unwrap();
        E::reopen(&dir.0, &plan).unwrap().close().unwrap();
        replay_checked::<E>(&dir.0, &plan, &pool).unwrap();
        let fewer = Plan { records: 499, ..plan };
        let err = replay_checked::<E>(&dir.0, &fewer, &pool).unwrap_err();
        assert_eq!(err.to_string(), "replay differs: 500 records replayed, 499 written");
        let other = Pool::new(plan.record_bytes, 10);
        let err = replay_checked::<E>(&dir.0, &plan, &other).unwrap_err();
        assert_eq!(err.to_string(), "replay differs: record 0 differs from what was written");
    }

    fn tempdir() -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chronicle-compare-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The naive baseline, except that its replay returns one record that was never written.
    struct Corrupting;

    impl Engine for Corrupting {
        const NAME: &'static str = "corrupting";
        const DURABILITY: &'static str = "";
        type Writer = engines::baseline::BaselineWriter;

        fn create(dir: &Path, plan: &Plan) -> Res<Self::Writer> {
            engines::baseline::Baseline::create(dir, plan)
        }

        fn reopen(dir: &Path, plan: &Plan) -> Res<Self::Writer> {
            engines::baseline::Baseline::reopen(dir, plan)
        }

        fn replay(dir: &Path, plan: &Plan, check: &mut Verifier) -> Res<()> {
            check.check(&[0u8; 128]);
            engines::baseline::Baseline::replay(dir, plan, check)
        }
    }

    #[test]
    fn a_replay_that_differs_fails_the_run() {
        let scratch = tempdir();
        let config = Config {
            reps: 1,
            shrink: 10_000,
            out: scratch.0.clone(),
            engines: Vec::new(),
            phases: Vec::new(),
            skip_limits: true,
        };
        let limits = limits::Limits { batch: BATCH, ..limits::Limits::default() };
        let machine = report::Machine::describe(&scratch.0);
        let mut runner = Runner {
            report: Report::new(1, BATCH, limits, machine, config.shrink),
            config,
            root: scratch.0.clone(),
        };
        run::<engines::baseline::Baseline>(&mut runner, Phase::Small, 0);
        assert!(runner.report.all_ok());
        assert!(runner.report.median(Workload::Replay128, "bufwriter+crc").is_some());
        run::<Corrupting>(&mut runner, Phase::Small, 0);
        assert!(!runner.report.all_ok());
        assert!(runner.report.median(Workload::Replay128, "corrupting").is_none());
    }

    #[test]
    fn chronicle_round_trip() {
        round_trip::<engines::chronicle::Chronicle>();
    }

    #[test]
    fn okaywal_round_trip() {
        round_trip::<engines::okaywal::OkayWal>();
    }

    #[test]
    fn commitlog_round_trip() {
        round_trip::<engines::commitlog::Commitlog>();
    }

    #[test]
    fn sqlite_round_trip() {
        round_trip::<engines::sqlite::Sqlite>();
    }

    #[test]
    fn baseline_round_trip() {
        round_trip::<engines::baseline::Baseline>();
    }
}
