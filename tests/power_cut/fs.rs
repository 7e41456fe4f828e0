//! The FUSE side of the power-cut filesystem: each request is applied to the in-memory
//! [`Tree`] after [`Control::begin`] has counted it (and perhaps cut the power or injected a
//! fault). Only what Chronicle needs is implemented; the kernel handles `flock` itself (the
//! filesystem does not ask for `FUSE_FLOCK_LOCKS`), and `lseek(SEEK_DATA)` falls back to
//! "all data" when `lseek` is not implemented.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::control::{Control, Op};
use super::state::{Kind, Node, Tree};

/// How long the kernel may cache names and attributes. Nothing changes the filesystem but
/// requests through this mount, so any value is right; a cut mounts a new filesystem.
const TTL: Duration = Duration::from_secs(1);

/// What the filesystem and the test share.
#[derive(Debug, Default)]
pub struct Shared {
    pub tree: Mutex<Tree>,
    pub control: Control,
}

impl Shared {
    pub fn tree(&self) -> MutexGuard<'_, Tree> {
        // A panic while the lock was held left the tree as it was at some request's end.
        self.tree.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cuts the power now (if the filesystem has not already).
    pub fn freeze(&self) {
        let tree = self.tree();
        self.control.freeze_now(&tree, None, "");
    }
}

/// The filesystem as `fuser` mounts it.
pub struct PowerCutFs {
    pub shared: Arc<Shared>,
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn attr(ino: u64, node: &Node) -> FileAttr {
    let size = node.size();
    // SAFETY: neither call has preconditions; they only return this process's ids.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.mtime,
        mtime: node.mtime,
        ctime: node.mtime,
        crtime: node.mtime,
        kind: if node.is_dir() { FileType::Directory } else { FileType::RegularFile },
        perm: node.perm,
        nlink: if node.is_dir() { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl PowerCutFs {
    /// Runs `f` on the tree after counting `op` on `ino`'s file; an error from either goes
    /// back to the kernel.
    fn apply<T>(
        &self,
        op: Op,
        ino: u64,
        detail: &str,
        f: impl FnOnce(&mut Tree) -> Result<T, i32>,
    ) -> Result<T, Errno> {
        let mut tree = self.shared.tree();
        let name = tree.name(ino);
        self.shared.control.begin(op, &name, detail, &tree).map_err(errno)?;
        f(&mut tree).map_err(errno)
    }

    fn entry_reply(&self, ino: u64, reply: ReplyEntry) {
        let tree = self.shared.tree();
        match tree.node(ino) {
            Ok(node) => reply.entry(&TTL, &attr(ino, node), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn attr_reply(&self, ino: u64, reply: ReplyAttr) {
        let tree = self.shared.tree();
        match tree.node(ino) {
            Ok(node) => reply.attr(&TTL, &attr(ino, node)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn new_node(&self, parent: INodeNo, name: &OsStr, mode: u32, dir: bool) -> Result<u64, Errno> {
        let op = if dir { Op::Mkdir } else { Op::Create };
        let name_s = name.to_string_lossy().into_owned();
        let mut tree = self.shared.tree();
        self.shared.control.begin(op, &name_s, "", &tree).map_err(errno)?;
        tree.create(parent.0, name, dir, (mode & 0o7777) as u16).map_err(errno)
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.shared.tree().lookup(parent.0, name);
        match found {
            Ok(ino) => self.entry_reply(ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr_reply(ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let Some(len) = size {
            let detail = &format!(" to {len}");
            if let Err(e) = self.apply(Op::Truncate, ino.0, detail, |t| t.resize(ino.0, len)) {
                return reply.error(e);
            }
        }
        {
            let mut tree = self.shared.tree();
            if let Some(node) = tree.nodes.get_mut(&ino.0) {
                if let Some(mode) = mode {
                    node.perm = (mode & 0o7777) as u16;
                }
                match mtime {
                    Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
                    Some(TimeOrNow::Now) => node.mtime = SystemTime::now(),
                    None => {}
                }
            }
        }
        self.attr_reply(ino.0, reply);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.new_node(parent, name, mode, false) {
            Ok(ino) => self.entry_reply(ino, reply),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.new_node(parent, name, mode, true) {
            Ok(ino) => self.entry_reply(ino, reply),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name_s = name.to_string_lossy().into_owned();
        let mut tree = self.shared.tree();
        let done = self
            .shared
            .control
            .begin(Op::Unlink, &name_s, "", &tree)
            .and_then(|()| tree.remove(parent.0, name, false));
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name_s = name.to_string_lossy().into_owned();
        let mut tree = self.shared.tree();
        let done = self
            .shared
            .control
            .begin(Op::Rmdir, &name_s, "", &tree)
            .and_then(|()| tree.remove(parent.0, name, true));
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let names = format!("{} -> {}", name.to_string_lossy(), newname.to_string_lossy());
        let mut tree = self.shared.tree();
        let done = self
            .shared
            .control
            .begin(Op::Rename, &names, "", &tree)
            .and_then(|()| tree.rename(parent.0, name, newparent.0, newname, no_replace));
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // `O_TRUNC` arrives as a `setattr` first (the filesystem does not ask for atomic
        // truncation). Keeping the cache is right: only this mount changes the files.
        let tree = self.shared.tree();
        let name = tree.name(ino.0);
        let op =
            if flags.0 & libc::O_ACCMODE == libc::O_RDONLY { Op::Open } else { Op::OpenToWrite };
        let open = self.shared.control.begin(op, &name, "", &tree);
        match open.and_then(|()| tree.node(ino.0).map(|_| ())) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let tree = self.shared.tree();
        let name = tree.name(ino.0);
        let detail = &format!(" @{offset}+{size}");
        let read = self.shared.control.begin(Op::Read, &name, detail, &tree);
        match read.and_then(|()| tree.read(ino.0, offset, size)) {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let detail = &format!(" @{offset}+{}", data.len());
        match self.apply(Op::Write, ino.0, detail, |t| t.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.apply(Op::Fsync, ino.0, "", |t| t.sync_file(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.shared.tree();
        let dir = match tree.dir(ino.0) {
            Ok(dir) => dir,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [(ino.0, ".".as_ref()), (dir.parent, "..".as_ref())];
        let entries = dots.into_iter().chain(dir.entries.iter().map(|(n, &i)| (i, n.as_os_str())));
        for (i, (child, name)) in entries.enumerate().skip(offset as usize) {
            let kind = match tree.nodes.get(&child).map(|n| &n.kind) {
                Some(Kind::File(_)) => FileType::RegularFile,
                _ => FileType::Directory,
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.apply(Op::FsyncDir, ino.0, "", |t| t.sync_dir(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let blocks = 1 << 24; // 64 GiB of 4 KiB blocks: nothing runs out unless a fault says so
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        // The kernel asks to create only a name it found missing; if another request made it
        // meanwhile, open it unless the caller wanted it new.
        let existing = self.shared.tree().lookup(parent.0, name);
        let ino = match existing {
            Ok(_) if flags & libc::O_EXCL != 0 => return reply.error(Errno::EEXIST),
            Ok(ino) => ino,
            Err(_) => match self.new_node(parent, name, mode, false) {
                Ok(ino) => ino,
                Err(e) => return reply.error(e),
            },
        };
        let tree = self.shared.tree();
        match tree.node(ino) {
            Ok(node) => reply.created(
                &TTL,
                &attr(ino, node),
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Mode 0 only (allocate, extending the size), which is what Chronicle uses; the
        // kernel turns this error into `EOPNOTSUPP` for the caller.
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let detail = &format!(" @{offset}+{length}");
        let done = self.apply(Op::Fallocate, ino.0, detail, |t| {
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            if end > t.node(ino.0)?.size() {
                t.resize(ino.0, end)?;
            }
            Ok(())
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
