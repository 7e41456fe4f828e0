//! The write timestamp of records: wall-clock milliseconds, never decreasing, read cheaply.
//!
//! Reading the wall clock (`clock_gettime` through the vDSO, plus the conversion) costs about
//! 30 ns on the machines Chronicle is measured on: a third of a buffered append of a small
//! record. But a timestamp has millisecond resolution, so it cannot change until the next
//! millisecond starts, and after a real read the clock knows how far away that is. On x86-64,
//! when the kernel itself keeps time with the CPU's time-stamp counter (clocksource `tsc`, so
//! the counter is known to be constant-rate and synchronised across CPUs), [`RecordClock`]
//! turns that distance into a counter deadline and, until the counter reaches it, returns the
//! millisecond it read, for the price of one `rdtsc` (about 8 ns). The deadline is computed
//! with a counter frequency 2 % below the measured one, so it always falls before the real
//! millisecond boundary: every timestamp equals what a real read would have given, unless the
//! wall clock is stepped, which is noticed at the next real read, at most one millisecond
//! later.
//!
//! Everywhere else (other architectures, other clocksources, or until the counter's frequency
//! has been measured over the first 10 ms of appends), every call reads the wall clock.
//!
//! The counter is read through `crate::cpu`, which holds the `unsafe` intrinsic call; this
//! module has none.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the counter is watched against the monotonic clock before its frequency is used.
const CALIBRATION: Duration = Duration::from_millis(10);

/// The deadline assumes the counter runs this much slower than measured (in parts per 1000),
/// so it comes before the millisecond boundary despite measurement error and clock slewing.
const SAFETY_MARGIN_PER_MILLE: u64 = 20;

const NANOS_PER_MS: u64 = 1_000_000;

/// Wall-clock milliseconds since the Unix epoch (0 for a clock set before it), and the
/// nanoseconds already elapsed within that millisecond.
pub(crate) fn wall_clock() -> (u64, u64) {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or((0, 0), |d| {
        // Seconds times 1000 plus the sub-second part avoids `as_millis`'s 128-bit division.
        let ms = d.as_secs().saturating_mul(1000).saturating_add(u64::from(d.subsec_millis()));
        (ms, u64::from(d.subsec_nanos()) % NANOS_PER_MS)
    })
}

/// Wall-clock milliseconds since the Unix epoch (0 for a clock set before it).
pub(crate) fn now_ms() -> u64 {
    wall_clock().0
}

/// The writer's timestamp source: non-decreasing wall-clock milliseconds.
#[derive(Debug)]
pub(crate) struct RecordClock {
    /// The last timestamp handed out; never decreases.
    last_ms: u64,
    counter: Option<Counter>,
}

/// What the time-stamp counter shortcut needs.
#[derive(Debug)]
struct Counter {
    /// Counter value before which `last_ms` is still the current millisecond (0: read).
    deadline: u64,
    /// Counter ticks per millisecond, lowered by the safety margin; 0 until calibrated.
    ticks_per_ms: u64,
    /// Counter value and monotonic time at the start of calibration.
    calibration_start: (u64, Instant),
}

impl RecordClock {
    /// A clock whose timestamps will not go below `floor_ms` (the last timestamp in the log).
    pub(crate) fn new(floor_ms: u64) -> RecordClock {
        let counter = counter_usable().then(|| Counter {
            deadline: 0,
            ticks_per_ms: 0,
            calibration_start: (read_counter(), Instant::now()),
        });
        RecordClock { last_ms: floor_ms, counter }
    }

    /// The last timestamp handed out (or the floor).
    pub(crate) fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The timestamp for a record written now: the wall clock's millisecond, or the last one
    /// handed out if the wall clock went back.
    #[inline]
    pub(crate) fn now_ms(&mut self) -> u64 {
        let Some(counter) = &mut self.counter else {
            self.last_ms = self.last_ms.max(now_ms());
            return self.last_ms;
        };
        // Read before the wall clock, so the deadline is computed from a moment no later than
        // the one the wall clock reports.
        let ticks = read_counter();
        if ticks < counter.deadline {
            return self.last_ms;
        }
        let (ms, nanos_into_ms) = wall_clock();
        self.last_ms = self.last_ms.max(ms);
        if counter.ticks_per_ms == 0 {
            counter.calibrate(ticks);
        }
        if counter.ticks_per_ms != 0 && ms == self.last_ms {
            let left = NANOS_PER_MS - nanos_into_ms;
            // At most `ticks_per_ms`: no overflow for any plausible frequency.
            let left_ticks =
                u128::from(counter.ticks_per_ms) * u128::from(left) / u128::from(NANOS_PER_MS);
            counter.deadline = ticks.saturating_add(u64::try_from(left_ticks).unwrap_or(0));
        }
        self.last_ms
    }
}

impl Counter {
    /// Measures the counter's frequency once `CALIBRATION` has passed since the start.
    fn calibrate(&mut self, ticks: u64) {
        let (start_ticks, start) = self.calibration_start;
        let elapsed = start.elapsed();
        if elapsed < CALIBRATION {
            return;
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let per_ms = u128::from(ticks.saturating_sub(start_ticks)) * u128::from(NANOS_PER_MS)
            / u128::from(nanos.max(1));
        let lowered = per_ms * u128::from(1000 - SAFETY_MARGIN_PER_MILLE) / 1000;
        // A counter that did not move (or moved implausibly) is not used: `ticks_per_ms` stays
        // 0 and the calibration starts over.
        match u64::try_from(lowered) {
            Ok(per_ms) if per_ms >= 1000 => self.ticks_per_ms = per_ms,
            _ => self.calibration_start = (ticks, Instant::now()),
        }
    }
}

/// Whether the kernel keeps time with the time-stamp counter, so it is constant-rate and in
/// step across CPUs. Checked once per process.
fn counter_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64")
            && std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|source| source.trim() == "tsc")
    })
}

/// The time-stamp counter (`rdtsc`, through `crate::cpu`, which holds the `unsafe` call).
#[cfg(target_arch = "x86_64")]
#[inline]
fn read_counter() -> u64 {
    crate::cpu::time_stamp_counter()
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn read_counter() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_follow_the_wall_clock_and_never_decrease() {
        let mut clock = RecordClock::new(0);
        let started = Instant::now();
        let mut previous = 0;
        let mut reads = 0u64;
        // Long enough to calibrate and then use the counter for many milliseconds.
        while started.elapsed() < Duration::from_millis(60) {
            let before = now_ms();
            let stamp = clock.now_ms();
            let after = now_ms();
            assert!(stamp >= previous, "went back from {previous} to {stamp}");
            assert!(
                before <= stamp && stamp <= after,
                "stamp {stamp} outside the wall clock's [{before}, {after}]"
            );
            previous = stamp;
            reads += 1;
        }
        assert!(reads > 1000);
        // Where the counter is usable, it was calibrated and the shortcut was taken.
        if let Some(counter) = &clock.counter {
            assert!(counter.ticks_per_ms >= 1000, "not calibrated: {counter:?}");
            assert_ne!(counter.deadline, 0, "no deadline was ever set");
        }
    }

    #[test]
    fn the_floor_holds_when_the_wall_clock_is_behind() {
        let future = now_ms() + 3_600_000;
        let mut clock = RecordClock::new(future);
        assert_eq!(clock.now_ms(), future);
        assert_eq!(clock.last_ms(), future);
    }
}
