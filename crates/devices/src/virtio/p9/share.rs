//! The shared directory, confined. Every file the guest reaches is a
//! file descriptor obtained from the share's root one component at a
//! time: a name is one path component (no `/`, no NUL), looked up with
//! openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
//! and `O_PATH | O_NOFOLLOW`, so a symlink is handed back as itself and
//! never followed by the server (the guest's kernel resolves symlinks by
//! reading them). `..` at the root stays at the root, and a `..` anywhere
//! else is checked to still lie inside the share. Every other operation
//! is an `*at` call relative to such a directory descriptor with one
//! checked name, so a rename race can at worst hand back another file of
//! the share, never one outside it.
//!
//! Files are reopened for I/O through `/proc/self/fd` (as virtiofsd
//! does) and only when they are regular files or directories: device
//! nodes, FIFOs and sockets that happen to be in the share are not
//! opened on the host's behalf.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// A Linux errno (the value 9P2000.L's Rlerror carries).
pub type Errno = i32;
pub type Res<T> = Result<T, Errno>;

/// The longest name a component may have (Linux's NAME_MAX).
const NAME_MAX: usize = 255;
/// How far `..` checks climb before deciding a directory is not inside
/// the share (deeper than any real tree; bounds the work per walk).
const MAX_DEPTH: usize = 4096;

fn errno() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(r: libc::c_int) -> Res<()> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> Res<OwnedFd> {
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The attributes Tgetattr reports.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u64,
    pub blocks: u64,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Attr {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
    pub fn is_reg(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

/// Attributes of the file `fd` refers to (a symlink's own).
pub fn stat(fd: RawFd) -> Res<Attr> {
    // SAFETY: an all-zero stat is a valid value; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and C string, `st` outlives the call.
    check(unsafe {
        libc::fstatat(
            fd,
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(Attr {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: st.st_nlink,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        blksize: st.st_blksize as u64,
        blocks: st.st_blocks as u64,
        atime: (st.st_atime, st.st_atime_nsec),
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
    })
}

/// One path component from the guest, checked: not empty, no `/` or
/// NUL, at most NAME_MAX bytes. `.` and `..` pass here; callers that
/// create or remove refuse them with [`entry_name`].
pub fn component(name: &[u8]) -> Res<CString> {
    if name.is_empty() || name.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    CString::new(name).map_err(|_| libc::EINVAL)
}

/// A name for a new or removed directory entry: a [`component`] other
/// than `.` and `..`.
pub fn entry_name(name: &[u8]) -> Res<CString> {
    if name == b"." || name == b".." {
        return Err(libc::EINVAL);
    }
    component(name)
}

fn openat2(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> Res<OwnedFd> {
    // SAFETY: open_how is plain data; all-zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    retry_eagain(|| {
        // SAFETY: valid C string and open_how for the call's duration.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(r as libc::c_int)
    })
}

/// openat2 tries before EAGAIN goes back to the guest.
const EAGAIN_TRIES: usize = 16;

/// Runs `f` again while it fails with EAGAIN (openat2 with
/// RESOLVE_BENEATH: the kernel saw a concurrent rename and refuses to
/// guess; a retry re-resolves), at most [`EAGAIN_TRIES`] times: renames
/// in a loop (the guest's own, or the host's) must not hold the worker.
fn retry_eagain<T>(mut f: impl FnMut() -> Res<T>) -> Res<T> {
    let mut last = Err(libc::EAGAIN);
    for _ in 0..EAGAIN_TRIES {
        last = f();
        if !matches!(last, Err(libc::EAGAIN)) {
            break;
        }
    }
    last
}

/// Directories (device, inode) one walk found to lie inside the share.
/// Bounded: a walk has at most MAXWELEM steps and each climb records at
/// most [`MAX_DEPTH`] directories (in practice only the first climbs).
#[derive(Debug, Default)]
pub struct Inside(Vec<(u64, u64)>);

impl Inside {
    fn holds(&self, a: &Attr) -> bool {
        self.0.contains(&(a.dev, a.ino))
    }
}

/// The shared directory.
pub struct Share {
    root: OwnedFd,
    root_attr: Attr,
    /// `/proc/self/fd`, through which files are reopened for I/O.
    proc_fd: OwnedFd,
    ro: bool,
    /// `..` lookups made to check that a directory lies inside the
    /// share (the cost a guest's walks of `..` put on the worker).
    climbs: AtomicU64,
}

impl Share {
    /// Opens `path` as a share; the error is the host's reason.
    pub fn open(path: &Path, ro: bool) -> io::Result<Share> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let open = |p: &CStr| {
            // SAFETY: valid C string.
            owned(unsafe {
                libc::open(
                    p.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            })
            .map_err(io::Error::from_raw_os_error)
        };
        let root = open(&c)?;
        let proc_fd = open(c"/proc/self/fd")?;
        let root_attr = stat(root.as_raw_fd()).map_err(io::Error::from_raw_os_error)?;
        let share = Share {
            root,
            root_attr,
            proc_fd,
            ro,
            climbs: AtomicU64::new(0),
        };
        // Confinement rests on openat2 (Linux 5.6): refuse to serve
        // without it rather than serve unconfined.
        share
            .lookup(share.root.as_raw_fd(), c".")
            .map_err(io::Error::from_raw_os_error)?;
        Ok(share)
    }

    pub fn read_only(&self) -> bool {
        self.ro
    }

    /// A new descriptor of the root.
    pub fn root(&self) -> Res<OwnedFd> {
        self.lookup(self.root.as_raw_fd(), c".")
    }

    pub fn root_attr(&self) -> &Attr {
        &self.root_attr
    }

    /// `..` lookups made so far (see `climbs`).
    pub fn climbs(&self) -> u64 {
        self.climbs.load(Ordering::Relaxed)
    }

    pub fn is_root(&self, a: &Attr) -> bool {
        a.dev == self.root_attr.dev && a.ino == self.root_attr.ino
    }

    fn lookup(&self, dir: RawFd, name: &CStr) -> Res<OwnedFd> {
        openat2(dir, name, libc::O_PATH, 0)
    }

    /// Walks one component from directory `dir` (whose attributes are
    /// `dir_attr`): `.` stays, `..` climbs but never above the root.
    pub fn walk(&self, dir: RawFd, dir_attr: &Attr, name: &[u8]) -> Res<OwnedFd> {
        self.walk_in(dir, dir_attr, name, &mut Inside::default())
    }

    /// [`Share::walk`] as one step of a longer walk: `inside` carries
    /// what the walk's earlier `..` steps proved, so that a walk of many
    /// `..` checks the way up to the root once rather than once per step.
    pub fn walk_in(
        &self,
        dir: RawFd,
        dir_attr: &Attr,
        name: &[u8],
        inside: &mut Inside,
    ) -> Res<OwnedFd> {
        let c = component(name)?;
        if !dir_attr.is_dir() {
            return Err(libc::ENOTDIR);
        }
        match name {
            b"." => self.lookup(dir, c"."),
            b".." if self.is_root(dir_attr) => self.root(),
            b".." => self.parent(dir, inside),
            _ => self.lookup(dir, &c),
        }
    }

    /// `dir`'s parent, provided the share's root is among its
    /// ancestors. A directory the guest reached lies inside the share
    /// unless the host moved it out meanwhile; then `..` is refused.
    /// Directories the climb passes are recorded in `inside`: a later
    /// `..` of the same walk that lands on one of them is not climbed
    /// again (the check is as old as the walk, no older).
    fn parent(&self, dir: RawFd, inside: &mut Inside) -> Res<OwnedFd> {
        let dotdot = |fd: RawFd| {
            self.climbs.fetch_add(1, Ordering::Relaxed);
            // SAFETY: valid C string; `..` of a directory descriptor.
            owned(unsafe {
                libc::openat(
                    fd,
                    c"..".as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })
        };
        let parent = dotdot(dir)?;
        let mut cur_attr = stat(parent.as_raw_fd())?;
        if inside.holds(&cur_attr) {
            return Ok(parent);
        }
        let mut cur: Option<OwnedFd> = None;
        let mut passed = Vec::new();
        for _ in 0..MAX_DEPTH {
            if self.is_root(&cur_attr) {
                inside.0.extend(passed);
                return Ok(parent);
            }
            passed.push((cur_attr.dev, cur_attr.ino));
            let next = dotdot(cur.as_ref().map_or(parent.as_raw_fd(), |f| f.as_raw_fd()))?;
            let next_attr = stat(next.as_raw_fd())?;
            if next_attr.dev == cur_attr.dev && next_attr.ino == cur_attr.ino {
                break; // the host's root: the share is not above us
            }
            cur = Some(next);
            cur_attr = next_attr;
        }
        Err(libc::EACCES)
    }

    /// Reopens the file of `fd` for I/O with open(2) `flags`. Only
    /// regular files and directories: a symlink is never followed here,
    /// and special files are not opened by the host.
    pub fn reopen(&self, fd: RawFd, attr: &Attr, flags: i32) -> Res<OwnedFd> {
        if !(attr.is_reg() || attr.is_dir()) {
            return Err(if attr.is_symlink() {
                libc::ELOOP
            } else {
                libc::EOPNOTSUPP
            });
        }
        let name = CString::new(fd.to_string()).map_err(|_| libc::EINVAL)?;
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW);
        // SAFETY: valid C string; the magic link names `fd`'s own inode.
        let f = owned(unsafe {
            libc::openat(
                self.proc_fd.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        })?;
        // The descriptor number cannot have changed under us (we hold
        // `fd`), but check the identity anyway: cheap and final.
        let a = stat(f.as_raw_fd())?;
        if a.dev != attr.dev || a.ino != attr.ino {
            return Err(libc::ESTALE);
        }
        Ok(f)
    }

    /// Refuses modifications of a read-only share.
    pub fn writable(&self) -> Res<()> {
        if self.ro {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    /// Creates and opens regular file `name` in `dir`, or without
    /// O_EXCL in `flags` (open(2) flags) opens the one already there;
    /// says whether this call created it. Never through a symlink
    /// (O_NOFOLLOW).
    pub fn create(&self, dir: RawFd, name: &[u8], flags: i32, mode: u32) -> Res<(OwnedFd, bool)> {
        self.writable()?;
        let c = entry_name(name)?;
        // Without O_EXCL an existing FIFO or device node would be opened
        // (a FIFO blocks the worker forever): open non-blocking, without
        // a controlling terminal, and keep only a regular file.
        let open = |extra: i32| {
            openat2(
                dir,
                &c,
                flags | extra | libc::O_NONBLOCK | libc::O_NOCTTY,
                file_mode(mode),
            )
        };
        // Exclusive first, so that we know whether the file is new (only
        // a new file is given to the guest's user); a name that exists
        // is then opened as it is, unless the guest asked for O_EXCL. A
        // file removed in between is created on the next round.
        let mut tries = 0;
        let (f, created) = loop {
            match open(libc::O_CREAT | libc::O_EXCL) {
                Ok(f) => break (f, true),
                Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => {}
                Err(e) => return Err(e),
            }
            match open(0) {
                Ok(f) => break (f, false),
                Err(libc::ENOENT) if tries < 2 => tries += 1,
                Err(e) => return Err(e),
            }
        };
        if !stat(f.as_raw_fd())?.is_reg() {
            return Err(libc::EOPNOTSUPP);
        }
        if flags & libc::O_NONBLOCK == 0 {
            // SAFETY: plain fcntl on a descriptor we own.
            let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
            if fl >= 0 {
                // SAFETY: as above.
                unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) };
            }
        }
        Ok((f, created))
    }

    pub fn mkdir(&self, dir: RawFd, name: &[u8], mode: u32) -> Res<OwnedFd> {
        self.writable()?;
        let c = entry_name(name)?;
        // SAFETY: valid C string.
        check(unsafe { libc::mkdirat(dir, c.as_ptr(), mode & 0o3777) })?;
        self.lookup(dir, &c)
    }

    pub fn symlink(&self, dir: RawFd, name: &[u8], target: &[u8]) -> Res<OwnedFd> {
        self.writable()?;
        let c = entry_name(name)?;
        // The target is stored, never resolved by us: any bytes but NUL.
        if target.is_empty() {
            return Err(libc::ENOENT);
        }
        if target.len() >= libc::PATH_MAX as usize {
            return Err(libc::ENAMETOOLONG);
        }
        let t = CString::new(target).map_err(|_| libc::EINVAL)?;
        // SAFETY: valid C strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), dir, c.as_ptr()) })?;
        self.lookup(dir, &c)
    }

    /// mknod: FIFOs, sockets and regular files only; device nodes would
    /// give the guest the host's devices.
    pub fn mknod(&self, dir: RawFd, name: &[u8], mode: u32) -> Res<OwnedFd> {
        self.writable()?;
        let c = entry_name(name)?;
        let kind = mode & libc::S_IFMT;
        if ![libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFREG, 0].contains(&kind) {
            return Err(libc::EPERM);
        }
        // SAFETY: valid C string.
        check(unsafe { libc::mknodat(dir, c.as_ptr(), kind | file_mode(mode), 0) })?;
        self.lookup(dir, &c)
    }

    /// Hard link to the file of `fd` (which the guest reached, so inside
    /// the share) as `name` in `dir`.
    pub fn link(&self, fd: RawFd, attr: &Attr, dir: RawFd, name: &[u8]) -> Res<()> {
        self.writable()?;
        if attr.is_dir() {
            return Err(libc::EPERM);
        }
        let c = entry_name(name)?;
        let src = CString::new(fd.to_string()).map_err(|_| libc::EINVAL)?;
        // Following the magic link lands on `fd`'s inode itself (a
        // symlink stays a symlink); AT_EMPTY_PATH would need
        // CAP_DAC_READ_SEARCH.
        // SAFETY: valid C strings.
        check(unsafe {
            libc::linkat(
                self.proc_fd.as_raw_fd(),
                src.as_ptr(),
                dir,
                c.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    }

    pub fn unlink(&self, dir: RawFd, name: &[u8], rmdir: bool) -> Res<()> {
        self.writable()?;
        let c = entry_name(name)?;
        let flags = if rmdir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: valid C string.
        check(unsafe { libc::unlinkat(dir, c.as_ptr(), flags) })
    }

    pub fn rename(&self, odir: RawFd, oname: &[u8], ndir: RawFd, nname: &[u8]) -> Res<()> {
        self.writable()?;
        let o = entry_name(oname)?;
        let n = entry_name(nname)?;
        // SAFETY: valid C strings.
        check(unsafe { libc::renameat(odir, o.as_ptr(), ndir, n.as_ptr()) })
    }

    pub fn readlink(&self, fd: RawFd) -> Res<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for its length; an empty path with
        // an O_PATH symlink descriptor reads that link.
        let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(errno());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// chmod of a non-symlink (Linux has no symlink modes).
    pub fn chmod(&self, fd: RawFd, attr: &Attr, mode: u32) -> Res<()> {
        self.writable()?;
        if attr.is_symlink() {
            return Err(libc::EOPNOTSUPP);
        }
        let mode = if attr.is_dir() {
            mode & 0o3777
        } else {
            file_mode(mode)
        };
        let name = CString::new(fd.to_string()).map_err(|_| libc::EINVAL)?;
        // SAFETY: valid C string naming `fd`'s inode.
        check(unsafe { libc::fchmodat(self.proc_fd.as_raw_fd(), name.as_ptr(), mode, 0) })
    }

    /// chown; `u32::MAX` leaves an id unchanged (as chown(2)'s -1).
    pub fn chown(&self, fd: RawFd, uid: u32, gid: u32) -> Res<()> {
        self.writable()?;
        // SAFETY: valid C string; never follows a symlink.
        check(unsafe {
            libc::fchownat(
                fd,
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        })
    }

    /// Clears the set-user-ID bit of the open file `fd`, and set-group-ID
    /// when group-execute is set (Linux's `should_remove_suid` rule), as
    /// the kernel does when a writer lacks CAP_FSETID.
    pub fn drop_set_id(&self, fd: RawFd) -> Res<()> {
        let a = stat(fd)?;
        let mut kill = libc::S_ISUID;
        if a.mode & libc::S_IXGRP != 0 {
            kill |= libc::S_ISGID;
        }
        if !a.is_reg() || a.mode & kill == 0 {
            return Ok(());
        }
        // SAFETY: plain fchmod of a descriptor we hold open.
        check(unsafe { libc::fchmod(fd, a.mode & 0o7777 & !kill) })
    }

    pub fn truncate(&self, fd: RawFd, attr: &Attr, size: u64) -> Res<()> {
        self.writable()?;
        if attr.is_dir() {
            return Err(libc::EISDIR);
        }
        let size = i64::try_from(size).map_err(|_| libc::EFBIG)?;
        let f = self.reopen(fd, attr, libc::O_WRONLY)?;
        // SAFETY: valid descriptor.
        check(unsafe { libc::ftruncate(f.as_raw_fd(), size) })
    }

    /// utimensat with `times` (UTIME_NOW/UTIME_OMIT allowed).
    pub fn utimes(&self, fd: RawFd, attr: &Attr, times: [libc::timespec; 2]) -> Res<()> {
        self.writable()?;
        if attr.is_symlink() {
            return Err(libc::EOPNOTSUPP);
        }
        let name = CString::new(fd.to_string()).map_err(|_| libc::EINVAL)?;
        // SAFETY: valid C string and two timespecs.
        check(unsafe {
            libc::utimensat(self.proc_fd.as_raw_fd(), name.as_ptr(), times.as_ptr(), 0)
        })
    }

    pub fn statfs(&self, fd: RawFd) -> Res<libc::statfs64> {
        // SAFETY: plain data, filled by the call.
        let mut s: libc::statfs64 = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and output buffer.
        check(unsafe { libc::fstatfs64(fd, &mut s) })?;
        Ok(s)
    }
}

/// A mode for a new or chmod-ed file: permissions and sticky bit only.
/// Set-id bits are dropped: a guest must not plant a set-uid program
/// for the host.
fn file_mode(mode: u32) -> u32 {
    mode & 0o1777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eagain_is_retried_a_bounded_number_of_times() {
        let mut calls = 0;
        // Succeeds only after many tries: the guest gets EAGAIN first.
        let r = retry_eagain(|| {
            calls += 1;
            if calls < 1000 {
                Err(libc::EAGAIN)
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(libc::EAGAIN));
        assert_eq!(calls, EAGAIN_TRIES);
        let mut calls = 0;
        let r = retry_eagain(|| {
            calls += 1;
            if calls < 3 {
                Err(libc::EAGAIN)
            } else {
                Ok(7)
            }
        });
        assert_eq!((r, calls), (Ok(7), 3));
        assert_eq!(
            retry_eagain(|| Err::<(), _>(libc::ENOENT)),
            Err(libc::ENOENT)
        );
    }
}
