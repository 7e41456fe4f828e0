//! What a test controls in a mounted power-cut filesystem: when the power goes (after a given
//! number of operations), and which operations fail with which error (fault injection).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::state::{Errno, Tree};

/// The operations the filesystem counts (all but reads and opens), and that faults can
/// target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Create,
    Mkdir,
    Write,
    Fsync,
    FsyncDir,
    Rename,
    Unlink,
    Rmdir,
    Truncate,
    Fallocate,
    /// Reads are never counted and never frozen, only failed by a fault.
    Read,
    /// Opening an existing file to read it only: as [`Op::Read`], only failed by a fault.
    Open,
    /// Opening an existing file to write it (not creating one): as [`Op::Open`].
    OpenToWrite,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Op::Create => "create",
            Op::Mkdir => "mkdir",
            Op::Write => "write",
            Op::Fsync => "fsync",
            Op::FsyncDir => "fsyncdir",
            Op::Rename => "rename",
            Op::Unlink => "unlink",
            Op::Rmdir => "rmdir",
            Op::Truncate => "truncate",
            Op::Fallocate => "fallocate",
            Op::Read => "read",
            Op::Open => "open",
            Op::OpenToWrite => "open to write",
        };
        f.write_str(name)
    }
}

/// What the filesystem does once the power is cut, until it is unmounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFreeze {
    /// Every counted operation fails with `EIO` (the disk is gone); reads still work, so that
    /// a page fault on a mapped file does not kill the test with `SIGBUS`.
    Eio,
    /// Everything goes on working, but nothing more becomes durable: the cut keeps the state
    /// at the moment of the freeze. Calls that return after it acknowledge nothing.
    Silent,
}

/// A fault: operations `op` on a file whose name contains `name` (any file if `None`; for a
/// rename, either name) fail with `errno`, after `skip` matching ones have passed, `times`
/// times (`u32::MAX`: for ever).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub name: Option<String>,
    pub errno: Errno,
    pub skip: u32,
    pub times: u32,
}

impl Fault {
    /// Every `op` on a file whose name contains `name` fails with `errno`, for ever.
    pub fn always(op: Op, name: &str, errno: Errno) -> Fault {
        Fault { op, name: Some(name.to_string()), errno, skip: 0, times: u32::MAX }
    }

    /// The next `op` on a file whose name contains `name` fails with `errno`, once.
    pub fn once(op: Op, name: &str, errno: Errno) -> Fault {
        Fault { times: 1, ..Fault::always(op, name, errno) }
    }
}

/// Where the power was cut: the state of the filesystem just before operation `index`, and
/// what that operation was.
#[derive(Debug, Clone)]
pub struct CutPoint {
    pub tree: Tree,
    pub index: u64,
    pub op: Option<Op>,
    pub name: String,
}

/// How many counted operations the trace keeps, for failure reports.
const TRACE_LEN: usize = 48;

#[derive(Debug)]
pub struct Control {
    ops: AtomicU64,
    freeze_at: AtomicU64,
    /// Cut the power at the n-th next operation of this kind instead (see
    /// [`Control::freeze_at_nth`]).
    freeze_at_kind: Mutex<Option<(Op, Option<String>, u64)>>,
    frozen: AtomicBool,
    eio_after_freeze: AtomicBool,
    cut: Mutex<Option<CutPoint>>,
    faults: Mutex<Vec<(Fault, u32)>>,
    fired: AtomicU64,
    by_op: Mutex<BTreeMap<Op, u64>>,
    trace: Mutex<VecDeque<String>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            ops: AtomicU64::new(0),
            freeze_at: AtomicU64::new(u64::MAX),
            freeze_at_kind: Mutex::new(None),
            frozen: AtomicBool::new(false),
            eio_after_freeze: AtomicBool::new(false),
            cut: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
            fired: AtomicU64::new(0),
            by_op: Mutex::new(BTreeMap::new()),
            trace: Mutex::new(VecDeque::new()),
        }
    }
}

impl Control {
    /// Counted operations so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Counted operations so far, by kind.
    pub fn ops_by_kind(&self) -> BTreeMap<Op, u64> {
        self.by_op.lock().unwrap().clone()
    }

    /// Cuts the power just before counted operation number `index` (counting from 1), which
    /// and every later one then behave as `after` says.
    pub fn freeze_at(&self, index: u64, after: AfterFreeze) {
        self.eio_after_freeze.store(after == AfterFreeze::Eio, Ordering::SeqCst);
        self.freeze_at.store(index, Ordering::SeqCst);
    }

    /// Cuts the power just before the `n`-th next operation `op` (counting from 1) on a file
    /// whose name contains `name` (any file if `None`), which and every later operation then
    /// behave as `after` says.
    pub fn freeze_at_nth(&self, op: Op, name: Option<&str>, n: u64, after: AfterFreeze) {
        self.eio_after_freeze.store(after == AfterFreeze::Eio, Ordering::SeqCst);
        *self.freeze_at_kind.lock().unwrap() = Some((op, name.map(str::to_string), n));
    }

    /// Whether the power has been cut.
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push((fault, 0));
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// How many operations faults have failed so far.
    pub fn faults_fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// The last counted operations, oldest first.
    pub fn trace(&self) -> Vec<String> {
        self.trace.lock().unwrap().iter().cloned().collect()
    }

    /// Where the power was cut, once it was.
    pub fn cut_point(&self) -> Option<CutPoint> {
        self.cut.lock().unwrap().clone()
    }

    /// Cuts the power now, if it is not already cut: `tree` is the state it leaves.
    pub(super) fn freeze_now(&self, tree: &Tree, op: Option<Op>, name: &str) {
        let mut cut = self.cut.lock().unwrap();
        if cut.is_none() {
            let index = self.ops();
            *cut = Some(CutPoint { tree: tree.clone(), index, op, name: name.to_string() });
            self.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Called by the filesystem before it performs `op` on the file `name` (with the lock on
    /// `tree` held): counts it, cuts the power if its turn has come, and says whether it must
    /// fail, and with which error.
    pub(super) fn begin(&self, op: Op, name: &str, detail: &str, tree: &Tree) -> Result<(), Errno> {
        if !matches!(op, Op::Read | Op::Open | Op::OpenToWrite) {
            let index = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
            *self.by_op.lock().unwrap().entry(op).or_default() += 1;
            let due = {
                let mut nth = self.freeze_at_kind.lock().unwrap();
                match nth.as_mut() {
                    Some((kind, within, left))
                        if *kind == op && within.as_deref().is_none_or(|w| name.contains(w)) =>
                    {
                        *left = left.saturating_sub(1);
                        *left == 0
                    }
                    _ => false,
                }
            };
            if (due || index >= self.freeze_at.load(Ordering::SeqCst)) && !self.frozen() {
                self.freeze_now(tree, Some(op), name);
            }
            let frozen = self.frozen();
            let mut trace = self.trace.lock().unwrap();
            if trace.len() == TRACE_LEN {
                trace.pop_front();
            }
            let mark = if frozen { " (after the cut)" } else { "" };
            trace.push_back(format!("#{index} {op} {name}{detail}{mark}"));
            drop(trace);
            if frozen && self.eio_after_freeze.load(Ordering::SeqCst) {
                return Err(libc::EIO);
            }
        }
        self.check_faults(op, name)
    }

    fn check_faults(&self, op: Op, name: &str) -> Result<(), Errno> {
        let mut faults = self.faults.lock().unwrap();
        for (fault, seen) in faults.iter_mut() {
            if fault.op != op || fault.name.as_deref().is_some_and(|n| !name.contains(n)) {
                continue;
            }
            *seen += 1;
            if *seen > fault.skip && *seen - fault.skip <= fault.times {
                self.fired.fetch_add(1, Ordering::SeqCst);
                return Err(fault.errno);
            }
        }
        Ok(())
    }
}
