//! The 9P2000.L server: one session (the virtio connection), its fid
//! table, and the dispatch of T-messages. Requests are answered one at a
//! time, in order; each answer fits in the negotiated msize.
//!
//! Ids from the guest (fids, counts, offsets, names) are checked before
//! use; an unknown fid is EBADF, a malformed message EPROTO. The fid
//! table is bounded, per session (EMFILE) and by the descriptors every
//! session of the process may hold together ([`FdBudget`], ENFILE), so a
//! guest cannot make the host run out of file descriptors.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::fd_budget::{Charge, FdBudget};
use super::share::{stat, Attr, Errno, Inside, Res, Share};
use super::wire::{self, msg, Malformed, Qid, Reader, Writer};

/// The largest msize we accept: 128 KiB of payload plus Linux's
/// 24-byte I/O header (P9_IOHDRSZ), so a 128 KiB read is one request.
pub const MAX_MSIZE: u32 = (128 << 10) + 24;
/// The smallest (Linux's own minimum). A reply that does not fit the
/// negotiated msize (a link target of nearly PATH_MAX bytes at this
/// size) is answered with ENOBUFS instead.
pub const MIN_MSIZE: u32 = 4096;
/// Fids one session may hold (each holds host descriptors).
pub const MAX_FIDS: usize = 16384;
/// Twalk's element limit (MAXWELEM).
const MAX_WALK: u16 = 16;
/// Rread/Rreaddir header: size, type, tag, count.
const IO_HEADER: u32 = 11;

/// No fid (P9_NOFID) and the "leave unchanged" uid/gid.
const NOFID: u32 = u32::MAX;

pub(super) struct Fid {
    /// The file: an O_PATH descriptor (or, after lcreate, the open one).
    pub fd: Arc<OwnedFd>,
    /// The directory it was found in and its name there (Trename,
    /// Tremove); `None` for the root.
    pub parent: Option<(Arc<OwnedFd>, Vec<u8>)>,
    /// The file opened for I/O by Tlopen/Tlcreate.
    pub open: Option<OwnedFd>,
    /// The user the fid acts for (Tattach's n_uname): owner of what it
    /// creates.
    pub uid: u32,
    /// Its share of the descriptor budget (taken by [`Server::insert`]).
    pub charge: Charge,
}

impl Fid {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

pub struct Server {
    pub(super) share: Arc<Share>,
    pub(super) msize: u32,
    pub(super) fids: HashMap<u32, Fid>,
    budget: Arc<FdBudget>,
}

/// What a handler failed with: an errno for Rlerror, or a malformed
/// message (also Rlerror, EPROTO).
pub(super) enum Fail {
    Errno(Errno),
    Malformed,
}

impl From<Errno> for Fail {
    fn from(e: Errno) -> Self {
        Fail::Errno(e)
    }
}

impl From<Malformed> for Fail {
    fn from(_: Malformed) -> Self {
        Fail::Malformed
    }
}

pub(super) type Reply = Result<Writer, Fail>;

pub(super) fn qid_of(share: &Share, a: &Attr) -> Qid {
    let ty = if a.is_dir() {
        wire::QTDIR
    } else if a.is_symlink() {
        wire::QTSYMLINK
    } else {
        wire::QTFILE
    };
    Qid {
        ty,
        version: 0,
        path: qid_path(share, a.dev, a.ino),
    }
}

/// The qid path of inode `ino` of device `dev`. Mount points inside the
/// share: the device is mixed in so inode numbers of two file systems do
/// not collide. Every qid (walk, getattr, readdir) is built here.
pub(super) fn qid_path(share: &Share, dev: u64, ino: u64) -> u64 {
    if dev == share.root_attr().dev {
        ino
    } else {
        ino ^ dev.rotate_left(48)
    }
}

impl Server {
    /// A session charging its fids to the process's budget.
    pub fn new(share: Arc<Share>) -> Self {
        Self::with_budget(share, FdBudget::global())
    }

    pub fn with_budget(share: Arc<Share>, budget: Arc<FdBudget>) -> Self {
        Server {
            share,
            msize: MAX_MSIZE,
            fids: HashMap::new(),
            budget,
        }
    }

    /// The negotiated msize (MAX_MSIZE before Tversion): the largest
    /// request and reply.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// Forgets the session (device reset or a new Tversion).
    pub fn reset(&mut self) {
        self.fids.clear();
        self.msize = MAX_MSIZE;
    }

    /// Answers one T-message; `None` when it is too short to carry a
    /// tag to answer to.
    pub fn handle(&mut self, req: &[u8]) -> Option<Vec<u8>> {
        if req.len() < wire::HEADER {
            return None;
        }
        let size = u32::from_le_bytes([req[0], req[1], req[2], req[3]]) as usize;
        let ty = req[4];
        let tag = u16::from_le_bytes([req[5], req[6]]);
        if size < wire::HEADER || size > req.len() {
            return Some(wire::rlerror(tag, libc::EPROTO));
        }
        let mut r = Reader::new(&req[wire::HEADER..size]);
        let res = self.dispatch(ty, tag, &mut r);
        let reply = match res {
            Ok(w) => w.finish(),
            Err(Fail::Errno(e)) => wire::rlerror(tag, e),
            Err(Fail::Malformed) => wire::rlerror(tag, libc::EPROTO),
        };
        if reply.len() > self.msize as usize {
            return Some(wire::rlerror(tag, libc::ENOBUFS));
        }
        Some(reply)
    }

    fn dispatch(&mut self, ty: u8, tag: u16, r: &mut Reader) -> Reply {
        let w = Writer::new(ty.wrapping_add(1), tag);
        match ty {
            msg::TVERSION => self.version(w, r),
            msg::TATTACH => self.attach(w, r),
            msg::TWALK => self.walk(w, r),
            msg::TCLUNK => {
                let fid = r.u32()?;
                self.fids.remove(&fid).ok_or(libc::EBADF)?;
                Ok(w)
            }
            msg::TFLUSH => {
                // Requests are answered in order, so the flushed one is
                // already answered.
                r.u16()?;
                Ok(w)
            }
            msg::TGETATTR => self.getattr(w, r),
            msg::TSETATTR => self.setattr(w, r),
            msg::TSTATFS => self.statfs(w, r),
            msg::TLOPEN => self.lopen(w, r),
            msg::TLCREATE => self.lcreate(w, r),
            msg::TREAD => self.read(w, r),
            msg::TWRITE => self.write(w, r),
            msg::TREADDIR => self.readdir(w, r),
            msg::TFSYNC => self.fsync(w, r),
            msg::TMKDIR => self.mkdir(w, r),
            msg::TSYMLINK => self.symlink(w, r),
            msg::TMKNOD => self.mknod(w, r),
            msg::TREADLINK => self.readlink(w, r),
            msg::TLINK => self.link(w, r),
            msg::TRENAME => self.rename(w, r),
            msg::TRENAMEAT => self.renameat(w, r),
            msg::TUNLINKAT => self.unlinkat(w, r),
            msg::TREMOVE => self.remove(w, r),
            msg::TLOCK => self.lock(w, r),
            msg::TGETLOCK => self.getlock(w, r),
            // No extended attributes are served; Linux treats this as
            // "not supported" and carries on.
            msg::TXATTRWALK | msg::TXATTRCREATE => Err(libc::EOPNOTSUPP.into()),
            // No authentication: attach needs none.
            msg::TAUTH => Err(libc::EOPNOTSUPP.into()),
            _ => Err(libc::EOPNOTSUPP.into()),
        }
    }

    pub(super) fn fid(&self, fid: u32) -> Res<&Fid> {
        self.fids.get(&fid).ok_or(libc::EBADF)
    }

    /// Inserts a new fid; `fid` must be free (or be `replacing`, whose
    /// share of the descriptor budget it then takes over).
    pub(super) fn insert(&mut self, id: u32, replacing: Option<u32>, mut f: Fid) -> Res<()> {
        if id == NOFID {
            return Err(libc::EBADF);
        }
        let full = self.fids.len() >= MAX_FIDS;
        match self.fids.get_mut(&id) {
            Some(_) if replacing != Some(id) => return Err(libc::EEXIST),
            Some(old) => f.charge = std::mem::take(&mut old.charge),
            None if full => return Err(libc::EMFILE),
            None => f.charge = self.budget.charge_fid()?,
        }
        self.fids.insert(id, f);
        Ok(())
    }

    fn version(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let msize = r.u32()?;
        let version = r.str()?;
        self.reset();
        if msize < MIN_MSIZE {
            return Err(libc::EINVAL.into());
        }
        self.msize = msize.min(MAX_MSIZE);
        let v: &[u8] = if version.starts_with(b"9P2000.L") {
            b"9P2000.L"
        } else {
            b"unknown"
        };
        w.u32(self.msize).str(v);
        Ok(w)
    }

    fn attach(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let _afid = r.u32()?;
        let _uname = r.str()?;
        let _aname = r.str()?;
        let n_uname = r.u32()?;
        let root = self.share.root()?;
        let a = stat(root.as_raw_fd())?;
        let f = Fid {
            fd: Arc::new(root),
            parent: None,
            open: None,
            uid: n_uname,
            charge: Charge::none(),
        };
        self.insert(fid, None, f)?;
        w.qid(&qid_of(&self.share, &a));
        Ok(w)
    }

    fn walk(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let newfid = r.u32()?;
        let n = r.u16()?;
        if n > MAX_WALK {
            return Err(libc::E2BIG.into());
        }
        let mut names = Vec::with_capacity(n.into());
        for _ in 0..n {
            names.push(r.str()?);
        }
        let start = self.fid(fid)?;
        let (uid, mut parent) = (start.uid, start.parent.clone());
        let mut cur = start.fd.clone();
        let mut attr = stat(cur.as_raw_fd())?;
        let mut qids = Vec::with_capacity(names.len());
        let mut inside = Inside::default();
        for name in &names {
            match self
                .share
                .walk_in(cur.as_raw_fd(), &attr, name, &mut inside)
            {
                Ok(next) => {
                    attr = stat(next.as_raw_fd())?;
                    qids.push(qid_of(&self.share, &attr));
                    parent = if self.share.is_root(&attr) {
                        None
                    } else {
                        Some((cur, name.to_vec()))
                    };
                    cur = Arc::new(next);
                }
                // The first element failing is an error; a later one a
                // short Rwalk (and newfid is not made).
                Err(e) if qids.is_empty() => return Err(e.into()),
                Err(_) => break,
            }
        }
        if qids.len() == names.len() {
            // `..` leaves a name that does not identify the entry in its
            // parent: such fids cannot be renamed or removed.
            if names.last().is_some_and(|n| *n == b"." || *n == b"..") {
                parent = None;
            }
            let f = Fid {
                fd: cur,
                parent,
                open: None,
                uid,
                charge: Charge::none(),
            };
            self.insert(newfid, Some(fid), f)?;
        }
        w.u16(qids.len() as u16);
        for q in &qids {
            w.qid(q);
        }
        Ok(w)
    }

    fn getattr(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let _mask = r.u64()?;
        let a = stat(self.fid(fid)?.raw())?;
        const BASIC: u64 = 0x7ff;
        w.u64(BASIC)
            .qid(&qid_of(&self.share, &a))
            .u32(a.mode)
            .u32(a.uid)
            .u32(a.gid)
            .u64(a.nlink)
            .u64(a.rdev)
            .u64(a.size)
            .u64(a.blksize)
            .u64(a.blocks);
        for (s, ns) in [a.atime, a.mtime, a.ctime, (0, 0)] {
            w.u64(s as u64).u64(ns as u64);
        }
        w.u64(0).u64(0); // gen, data_version
        Ok(w)
    }

    fn setattr(&mut self, w: Writer, r: &mut Reader) -> Reply {
        const MODE: u32 = 0x1;
        const UID: u32 = 0x2;
        const GID: u32 = 0x4;
        const SIZE: u32 = 0x8;
        const ATIME: u32 = 0x10;
        const MTIME: u32 = 0x20;
        const ATIME_SET: u32 = 0x80;
        const MTIME_SET: u32 = 0x100;
        let fid = r.u32()?;
        let valid = r.u32()?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let size = r.u64()?;
        let at = (r.u64()?, r.u64()?);
        let mt = (r.u64()?, r.u64()?);
        let fd = self.fid(fid)?.raw();
        let a = stat(fd)?;
        let share = &self.share;
        if valid & (MODE | UID | GID | SIZE | ATIME | MTIME) != 0 {
            share.writable()?;
        }
        if valid & MODE != 0 {
            share.chmod(fd, &a, mode)?;
        }
        if valid & (UID | GID) != 0 {
            let u = if valid & UID != 0 { uid } else { NOFID };
            let g = if valid & GID != 0 { gid } else { NOFID };
            share.chown(fd, u, g)?;
        }
        if valid & SIZE != 0 {
            share.truncate(fd, &a, size)?;
        }
        if valid & (ATIME | MTIME) != 0 {
            let ts = |on: bool, set: bool, (s, ns): (u64, u64)| -> Res<libc::timespec> {
                Ok(match (on, set) {
                    (false, _) => libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_OMIT,
                    },
                    (true, false) => libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_NOW,
                    },
                    (true, true) => {
                        if ns >= 1_000_000_000 {
                            return Err(libc::EINVAL);
                        }
                        libc::timespec {
                            tv_sec: s as i64,
                            tv_nsec: ns as i64,
                        }
                    }
                })
            };
            let times = [
                ts(valid & ATIME != 0, valid & ATIME_SET != 0, at)?,
                ts(valid & MTIME != 0, valid & MTIME_SET != 0, mt)?,
            ];
            share.utimes(fd, &a, times)?;
        }
        Ok(w)
    }

    fn statfs(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let s = self.share.statfs(self.fid(fid)?.raw())?;
        let fsid = {
            // SAFETY: fsid_t is two ints; reading them as bytes is fine.
            let b: [u32; 2] = unsafe { std::mem::transmute(s.f_fsid) };
            u64::from(b[0]) | (u64::from(b[1]) << 32)
        };
        w.u32(s.f_type as u32)
            .u32(s.f_bsize as u32)
            .u64(s.f_blocks)
            .u64(s.f_bfree)
            .u64(s.f_bavail)
            .u64(s.f_files)
            .u64(s.f_ffree)
            .u64(fsid)
            .u32(s.f_namelen as u32);
        Ok(w)
    }

    /// The most a read or readdir may return in this session.
    pub(super) fn io_limit(&self, count: u32) -> usize {
        count.min(self.msize - IO_HEADER) as usize
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
pub(super) mod tests;
