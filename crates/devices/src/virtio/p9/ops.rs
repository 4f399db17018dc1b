//! File operations of the 9P2000.L server: open/create, I/O, directory
//! listing, and the namespace changes (mkdir, link, rename, unlink).
//! Every name goes through [`Share`]'s checks; every count is capped by
//! the session's msize.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::fd_budget::Charge;
use super::server::{qid_of, qid_path, Fid, Reply, Server};
use super::share::{stat, Res};
use super::wire::{self, Reader, Writer};

/// Linux's 9P2000.L open flags (`P9_DOTL_*`), which are x86's values;
/// mapped one by one so the host's architecture does not matter.
mod dotl {
    pub const ACCMODE: u32 = 3;
    pub const EXCL: u32 = 0o200;
    pub const TRUNC: u32 = 0o1000;
    pub const APPEND: u32 = 0o2000;
    pub const DSYNC: u32 = 0o10000;
    pub const DIRECTORY: u32 = 0o200000;
    pub const SYNC: u32 = 0o4000000;
}

/// open(2) flags for the guest's `P9_DOTL_*` flags. Flags that would
/// make the host block or misbehave (O_NONBLOCK, O_DIRECT, O_ASYNC,
/// O_NOATIME, O_NOFOLLOW) are dropped.
fn open_flags(f: u32) -> Res<i32> {
    let mut o = match f & dotl::ACCMODE {
        0 => libc::O_RDONLY,
        1 => libc::O_WRONLY,
        2 => libc::O_RDWR,
        _ => return Err(libc::EINVAL),
    };
    for (d, l) in [
        (dotl::EXCL, libc::O_EXCL),
        (dotl::TRUNC, libc::O_TRUNC),
        (dotl::APPEND, libc::O_APPEND),
        (dotl::DSYNC, libc::O_DSYNC),
        (dotl::DIRECTORY, libc::O_DIRECTORY),
        (dotl::SYNC, libc::O_SYNC),
    ] {
        if f & d != 0 {
            o |= l;
        }
    }
    Ok(o)
}

fn modifies(o: i32) -> bool {
    o & libc::O_ACCMODE != libc::O_RDONLY || o & libc::O_TRUNC != 0
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// linux_dirent64's fixed part: ino, off, reclen, type.
const DIRENT_FIXED: usize = 8 + 8 + 2 + 1;

impl Server {
    fn opened(&self, fid: u32) -> Res<RawFd> {
        self.fid(fid)?
            .open
            .as_ref()
            .map(|f| f.as_raw_fd())
            .ok_or(libc::EBADF)
    }

    /// Gives a new file to the fid's user (and the guest's group), as a
    /// root-run server must; without privileges files stay ours.
    fn own(&self, fd: RawFd, uid: u32, gid: u32) {
        // SAFETY: no arguments.
        if unsafe { libc::geteuid() } == 0 {
            if let Err(e) = self.share.chown(fd, uid, gid) {
                log::debug!("virtio-9p: chown of a new file: errno {e}");
            }
        }
    }

    pub(super) fn lopen(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let flags = r.u32()?;
        let mut o = open_flags(flags)?;
        let f = self.fid(fid)?;
        let a = stat(f.raw())?;
        if modifies(o) {
            self.share.writable()?;
        }
        if a.is_dir() {
            if o & libc::O_ACCMODE != libc::O_RDONLY {
                return Err(libc::EISDIR.into());
            }
            o = libc::O_RDONLY | libc::O_DIRECTORY;
        }
        let file = self.share.reopen(f.raw(), &a, o)?;
        let q = qid_of(&self.share, &a);
        if let Some(f) = self.fids.get_mut(&fid) {
            f.open = Some(file);
        }
        w.qid(&q).u32(0);
        Ok(w)
    }

    pub(super) fn lcreate(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let name = r.str()?;
        let flags = r.u32()?;
        let mode = r.u32()?;
        let gid = r.u32()?;
        let o = open_flags(flags)? & !libc::O_DIRECTORY;
        let f = self.fid(fid)?;
        let (dir, uid) = (f.fd.clone(), f.uid);
        let (file, created) = self.share.create(dir.as_raw_fd(), name, o, mode)?;
        // open(O_CREAT) of an existing file leaves its owner alone.
        if created {
            self.own(file.as_raw_fd(), uid, gid);
        }
        let a = stat(file.as_raw_fd())?;
        // The fid now stands for the new file, open.
        let handle = file.try_clone().map_err(|_| libc::EMFILE)?;
        let nf = Fid {
            fd: Arc::new(handle),
            parent: Some((dir, name.to_vec())),
            open: Some(file),
            uid,
            charge: Charge::none(),
        };
        self.insert(fid, Some(fid), nf)?;
        w.qid(&qid_of(&self.share, &a)).u32(0);
        Ok(w)
    }

    pub(super) fn read(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let off = r.u64()?;
        let count = r.u32()?;
        let fd = self.opened(fid)?;
        let off = i64::try_from(off).map_err(|_| libc::EINVAL)?;
        let mut buf = vec![0u8; self.io_limit(count)];
        let n = loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::pread64(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
            if n < 0 && last_errno() == libc::EINTR {
                continue;
            }
            if n < 0 {
                return Err(last_errno().into());
            }
            break n as usize;
        };
        w.u32(n as u32).bytes(&buf[..n]);
        Ok(w)
    }

    pub(super) fn write(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let off = r.u64()?;
        let count = r.u32()?;
        let data = r.bytes(count as usize)?;
        self.share.writable()?;
        let fd = self.opened(fid)?;
        let off = i64::try_from(off).map_err(|_| libc::EINVAL)?;
        // A root-run server holds CAP_FSETID, so the kernel keeps the
        // set-id bits of a file it writes, whoever the guest's writer is;
        // an unprivileged writer's write must clear them (else a guest
        // user could rewrite a set-uid program and keep it set-uid).
        // QEMU's local backend (hw/9pfs/9p-local.c, local_pwritev) writes
        // with a plain pwritev and leaves this to the kernel: right when
        // QEMU runs unprivileged, not when it runs as root as we do. So
        // the kernel's rule is applied for the fid's user, before the
        // data lands; only user 0 (Tattach's n_uname) keeps the bits.
        if self.fid(fid)?.uid != 0 {
            self.share.drop_set_id(fd)?;
        }
        // SAFETY: `data` is readable for its length.
        let n = unsafe { libc::pwrite64(fd, data.as_ptr().cast(), data.len(), off) };
        if n < 0 {
            return Err(last_errno().into());
        }
        w.u32(n as u32);
        Ok(w)
    }

    pub(super) fn readdir(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let off = r.u64()?;
        let count = r.u32()?;
        let fd = self.opened(fid)?;
        let limit = self.io_limit(count);
        // The entries live on the directory's file system (a mount
        // point's entry names the directory it covers, as getdents says).
        let dev = stat(fd)?.dev;
        // Offsets are the host's d_off cookies, handed back verbatim.
        // SAFETY: plain lseek on our descriptor.
        if unsafe { libc::lseek64(fd, off as i64, libc::SEEK_SET) } < 0 {
            return Err(last_errno().into());
        }
        let mut out = Vec::with_capacity(limit.min(8192));
        let mut buf = vec![0u8; 16 << 10];
        'fill: loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return Err(last_errno().into());
            }
            if n == 0 {
                break;
            }
            let got = &buf[..n as usize];
            let mut p = 0;
            while p + DIRENT_FIXED <= got.len() {
                let ino = u64::from_ne_bytes(got[p..p + 8].try_into().unwrap_or_default());
                let d_off = u64::from_ne_bytes(got[p + 8..p + 16].try_into().unwrap_or_default());
                let reclen = u16::from_ne_bytes([got[p + 16], got[p + 17]]) as usize;
                let dtype = got[p + 18];
                if reclen < DIRENT_FIXED || p + reclen > got.len() {
                    break 'fill;
                }
                let raw = &got[p + DIRENT_FIXED..p + reclen];
                let name = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
                if out.len() + wire::dirent_size(name) > limit {
                    break 'fill;
                }
                let qty = match dtype {
                    libc::DT_DIR => wire::QTDIR,
                    libc::DT_LNK => wire::QTSYMLINK,
                    _ => wire::QTFILE,
                };
                let mut e = Writer::new(0, 0);
                e.u8(qty)
                    .u32(0)
                    .u64(qid_path(&self.share, dev, ino))
                    .u64(d_off)
                    .u8(dtype)
                    .str(name);
                out.extend_from_slice(&e.finish()[wire::HEADER..]);
                p += reclen;
            }
        }
        w.u32(out.len() as u32).bytes(&out);
        Ok(w)
    }

    pub(super) fn fsync(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let datasync = r.u32()?;
        let fd = self.opened(fid)?;
        // SAFETY: our descriptor.
        let rc = unsafe {
            if datasync != 0 {
                libc::fdatasync(fd)
            } else {
                libc::fsync(fd)
            }
        };
        if rc < 0 {
            return Err(last_errno().into());
        }
        Ok(w)
    }

    /// Creation common to mkdir, symlink and mknod: runs `make` in the
    /// directory of `dfid`, gives the result to the fid's user, answers
    /// its qid.
    fn make(
        &mut self,
        mut w: Writer,
        dfid: u32,
        gid: u32,
        make: impl FnOnce(&Server, RawFd) -> Res<OwnedFd>,
    ) -> Reply {
        let f = self.fid(dfid)?;
        let (dir, uid) = (f.raw(), f.uid);
        let new = make(self, dir)?;
        self.own(new.as_raw_fd(), uid, gid);
        let a = stat(new.as_raw_fd())?;
        w.qid(&qid_of(&self.share, &a));
        Ok(w)
    }

    pub(super) fn mkdir(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let dfid = r.u32()?;
        let name = r.str()?;
        let mode = r.u32()?;
        let gid = r.u32()?;
        self.make(w, dfid, gid, |s, dir| s.share.mkdir(dir, name, mode))
    }

    pub(super) fn symlink(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let dfid = r.u32()?;
        let name = r.str()?;
        let target = r.str()?;
        let gid = r.u32()?;
        self.make(w, dfid, gid, |s, dir| s.share.symlink(dir, name, target))
    }

    pub(super) fn mknod(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let dfid = r.u32()?;
        let name = r.str()?;
        let mode = r.u32()?;
        let _major = r.u32()?;
        let _minor = r.u32()?;
        let gid = r.u32()?;
        self.make(w, dfid, gid, |s, dir| s.share.mknod(dir, name, mode))
    }

    pub(super) fn readlink(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let fd = self.fid(fid)?.raw();
        if !stat(fd)?.is_symlink() {
            return Err(libc::EINVAL.into());
        }
        let t = self.share.readlink(fd)?;
        w.str(&t);
        Ok(w)
    }

    pub(super) fn link(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let dfid = r.u32()?;
        let fid = r.u32()?;
        let name = r.str()?;
        let dir = self.fid(dfid)?.raw();
        let fd = self.fid(fid)?.raw();
        let a = stat(fd)?;
        self.share.link(fd, &a, dir, name)?;
        Ok(w)
    }

    pub(super) fn renameat(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let odfid = r.u32()?;
        let oname = r.str()?;
        let ndfid = r.u32()?;
        let nname = r.str()?;
        let od = self.fid(odfid)?.raw();
        let nd = self.fid(ndfid)?.raw();
        self.share.rename(od, oname, nd, nname)?;
        Ok(w)
    }

    pub(super) fn unlinkat(&mut self, w: Writer, r: &mut Reader) -> Reply {
        const AT_REMOVEDIR: u32 = 0x200;
        let dfid = r.u32()?;
        let name = r.str()?;
        let flags = r.u32()?;
        let dir = self.fid(dfid)?.raw();
        self.share.unlink(dir, name, flags & AT_REMOVEDIR != 0)?;
        Ok(w)
    }

    /// The directory and name a fid was found under, provided that
    /// entry still is the fid's file (else ESTALE: it was renamed).
    fn entry_of(&self, fid: u32) -> Res<(Arc<OwnedFd>, Vec<u8>, bool)> {
        let f = self.fid(fid)?;
        let (dir, name) = f.parent.clone().ok_or(libc::EBUSY)?;
        let a = stat(f.raw())?;
        let here = self
            .share
            .walk(dir.as_raw_fd(), &stat(dir.as_raw_fd())?, &name)?;
        let b = stat(here.as_raw_fd())?;
        if (a.dev, a.ino) != (b.dev, b.ino) {
            return Err(libc::ESTALE);
        }
        Ok((dir, name, a.is_dir()))
    }

    pub(super) fn rename(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let dfid = r.u32()?;
        let name = r.str()?;
        let nd = self.fid(dfid)?.fd.clone();
        let (od, oname, _) = self.entry_of(fid)?;
        self.share
            .rename(od.as_raw_fd(), &oname, nd.as_raw_fd(), name)?;
        if let Some(f) = self.fids.get_mut(&fid) {
            f.parent = Some((nd, name.to_vec()));
        }
        Ok(w)
    }

    pub(super) fn remove(&mut self, w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        // The fid is clunked whether or not the removal works.
        let res = self
            .entry_of(fid)
            .and_then(|(dir, name, is_dir)| self.share.unlink(dir.as_raw_fd(), &name, is_dir));
        self.fids.remove(&fid);
        res?;
        Ok(w)
    }

    /// Locks are granted: the guest's kernel arbitrates among its own
    /// processes, and the host's files are not locked on its behalf.
    pub(super) fn lock(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let _ty = r.u8()?;
        let _flags = r.u32()?;
        let _start = r.u64()?;
        let _len = r.u64()?;
        let _proc = r.u32()?;
        let _client = r.str()?;
        self.fid(fid)?;
        w.u8(0); // P9_LOCK_SUCCESS
        Ok(w)
    }

    pub(super) fn getlock(&mut self, mut w: Writer, r: &mut Reader) -> Reply {
        let fid = r.u32()?;
        let _ty = r.u8()?;
        let start = r.u64()?;
        let len = r.u64()?;
        let proc_id = r.u32()?;
        let client = r.str()?;
        self.fid(fid)?;
        w.u8(2).u64(start).u64(len).u32(proc_id).str(client); // F_UNLCK
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_mapped() {
        assert_eq!(open_flags(0), Ok(libc::O_RDONLY));
        assert_eq!(open_flags(2 | 0o1000), Ok(libc::O_RDWR | libc::O_TRUNC));
        assert_eq!(open_flags(3), Err(libc::EINVAL));
        // O_NONBLOCK, O_DIRECT, O_NOFOLLOW, O_NOATIME dropped.
        assert_eq!(
            open_flags(0o4000 | 0o40000 | 0o400000 | 0o1000000),
            Ok(libc::O_RDONLY)
        );
        assert!(modifies(libc::O_RDONLY | libc::O_TRUNC));
        assert!(!modifies(libc::O_RDONLY | libc::O_DIRECTORY));
    }
}
