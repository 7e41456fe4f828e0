//! A FUSE filesystem for power-cut tests, mounted by the test process itself: it keeps every
//! file and directory in memory with its durable copy, and a *power cut* unmounts it, keeps
//! only what was durable (or some of what was not, [`CutMode::Partial`]) and mounts the result
//! at a fresh mountpoint, where the test reopens the log.
//!
//! The mount needs `/dev/fuse` and the right to mount (root); without them
//! [`PowerCutMount::new`] prints why and returns `None`, and the test skips.
#![allow(dead_code, unused_imports)]

pub mod check;
pub mod control;
pub mod fs;
pub mod state;
pub mod workload;

use std::ffi::CString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption};

pub use control::{AfterFreeze, Control, CutPoint, Fault, Op};
use fs::{PowerCutFs, Shared};
pub use state::{CutMode, Tree};

/// Prints a line on the test's standard error even when the harness captures output, so that
/// a skip or a campaign's figures show in `cargo test`'s log.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A mounted power-cut filesystem. Dropping it unmounts it.
pub struct PowerCutMount {
    base: tempfile::TempDir,
    mountpoint: PathBuf,
    shared: Arc<Shared>,
    background: Option<BackgroundSession>,
    /// The FUSE connection's number (the minor device number of the mount), to abort it if
    /// a plain unmount is refused.
    connection: u64,
    mounts: u32,
}

impl PowerCutMount {
    /// Mounts an empty filesystem, or prints why it cannot and returns `None` (`test` names
    /// the skipped test).
    pub fn new(test: &str) -> Option<PowerCutMount> {
        if !Path::new("/dev/fuse").exists() {
            note(&format!("skipped {test}: /dev/fuse does not exist (no FUSE on this machine)"));
            return None;
        }
        let base = tempfile::Builder::new().prefix("chronicle-power-cut-").tempdir().ok()?;
        match Self::mount_tree(&base, 0, Tree::new()) {
            Ok((mountpoint, shared, background, connection)) => Some(PowerCutMount {
                base,
                mountpoint,
                shared,
                background: Some(background),
                connection,
                mounts: 1,
            }),
            Err(e) => {
                note(&format!("skipped {test}: cannot mount a FUSE filesystem: {e}"));
                None
            }
        }
    }

    fn mount_tree(
        base: &tempfile::TempDir,
        n: u32,
        tree: Tree,
    ) -> std::io::Result<(PathBuf, Arc<Shared>, BackgroundSession, u64)> {
        let mountpoint = base.path().join(format!("mnt{n}"));
        std::fs::create_dir(&mountpoint)?;
        let shared = Arc::new(Shared { tree: std::sync::Mutex::new(tree), ..Shared::default() });
        let fs = PowerCutFs { shared: Arc::clone(&shared) };
        let mut config = Config::default();
        config.mount_options =
            vec![MountOption::FSName("chronicle-power-cut".to_string()), MountOption::RW];
        let background = fuser::spawn_mount(fs, &mountpoint, &config)?;
        let connection = std::fs::metadata(&mountpoint).map(|m| libc::minor(m.dev()) as u64)?;
        Ok((mountpoint, shared, background, connection))
    }

    /// Where the filesystem is mounted now (a new path after every cut).
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn control(&self) -> &Control {
        &self.shared.control
    }

    /// Cuts the power now, if an operation has not already cut it.
    pub fn freeze(&self) {
        self.shared.freeze();
    }

    /// A copy of the filesystem's state now.
    pub fn tree(&self) -> Tree {
        self.shared.tree().clone()
    }

    /// Cuts the power (now, unless it was cut already), unmounts, and mounts what survives
    /// at a new mountpoint. Everything open on the old mount must have been closed (logs
    /// dropped); if something still is, the connection is aborted. Returns where the power
    /// was cut.
    pub fn cut(&mut self, mode: CutMode) -> CutPoint {
        self.freeze();
        let point = self.control().cut_point().expect("a frozen filesystem has a cut point");
        self.unmount();
        let tree = point.tree.after_cut(mode);
        let (mountpoint, shared, background, connection) =
            Self::mount_tree(&self.base, self.mounts, tree).expect("remount after a power cut");
        self.mountpoint = mountpoint;
        self.shared = shared;
        self.background = Some(background);
        self.connection = connection;
        self.mounts += 1;
        point
    }

    /// Unmounts and remounts the same state, everything kept: a clean shutdown of the
    /// machine (after which nothing is in the page cache).
    pub fn remount(&mut self) {
        let tree = self.shared.tree().clone();
        self.unmount();
        let (mountpoint, shared, background, connection) =
            Self::mount_tree(&self.base, self.mounts, tree).expect("remount");
        self.mountpoint = mountpoint;
        self.shared = shared;
        self.background = Some(background);
        self.connection = connection;
        self.mounts += 1;
    }

    fn unmount(&mut self) {
        let Some(background) = self.background.take() else {
            return;
        };
        let path = CString::new(self.mountpoint.as_os_str().as_bytes()).unwrap();
        // SAFETY: `path` is a valid C string that lives across the call.
        if unsafe { libc::umount2(path.as_ptr(), 0) } != 0 {
            // Busy: something still has a file of it open. End the connection (every request
            // then fails) and detach the mount, so the background's thread can end.
            abort_connection(self.connection);
            // SAFETY: as above.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = background.join();
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}

impl Drop for PowerCutMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Aborts FUSE connection `id` through the fuse control filesystem (mounted here if it is
/// not yet).
fn abort_connection(id: u64) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let abort = dir.join(id.to_string()).join("abort");
    if !abort.exists() {
        let (src, target, kind) = (c"fusectl", c"/sys/fs/fuse/connections", c"fusectl");
        // SAFETY: valid C strings and no data argument.
        unsafe { libc::mount(src.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, std::ptr::null()) };
    }
    let _ = std::fs::write(abort, b"1");
}
