//! The server driven with real T-messages against a temporary share:
//! the operations Linux's v9fs uses, then every way out of the share
//! we know of (each must fail), then a read-only share.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::super::fd_budget::{FdBudget, FDS_PER_FID};
use super::super::share::Share;
use super::super::wire::{msg, Qid, Reader, Writer};
use super::{Server, MAX_FIDS, MAX_MSIZE};

/// A temporary directory `base` holding `share/` and, beside it,
/// `outside/secret` and `secret`, which the guest must never reach.
pub(crate) struct Tmp {
    pub base: PathBuf,
}

impl Tmp {
    pub fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "bhyve-p9-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("share/sub/inner")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret"), b"SECRET").unwrap();
        fs::write(base.join("secret"), b"SECRET").unwrap();
        fs::write(base.join("share/hello"), b"hello, world\n").unwrap();
        Tmp { base }
    }

    pub fn share(&self) -> PathBuf {
        self.base.join("share")
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A 9P client over the server, one message at a time.
pub(crate) struct Client {
    pub s: Server,
}

pub(crate) fn qid(r: &mut Reader) -> Qid {
    Qid {
        ty: r.u8().unwrap(),
        version: r.u32().unwrap(),
        path: r.u64().unwrap(),
    }
}

impl Client {
    pub fn new(path: &Path, ro: bool) -> Self {
        Self::with_budget(path, ro, FdBudget::global())
    }

    pub fn with_budget(path: &Path, ro: bool, budget: Arc<FdBudget>) -> Self {
        let share = Arc::new(Share::open(path, ro).unwrap());
        let mut c = Client {
            s: Server::with_budget(share, budget),
        };
        let b = c.ok(msg::TVERSION, |w| {
            w.u32(MAX_MSIZE).str(b"9P2000.L");
        });
        assert_eq!(&b[..4], &MAX_MSIZE.to_le_bytes());
        c.ok(msg::TATTACH, |w| {
            w.u32(0).u32(u32::MAX).str(b"root").str(b"").u32(0);
        });
        c
    }

    /// Sends a message; returns the reply's type and body.
    pub fn call(&mut self, ty: u8, body: impl FnOnce(&mut Writer)) -> (u8, Vec<u8>) {
        let mut w = Writer::new(ty, 7);
        body(&mut w);
        let r = self.s.handle(&w.finish()).expect("a reply");
        let size = u32::from_le_bytes(r[..4].try_into().unwrap()) as usize;
        assert_eq!(size, r.len());
        assert_eq!(&r[5..7], &7u16.to_le_bytes(), "tag echoed");
        (r[4], r[7..].to_vec())
    }

    pub fn ok(&mut self, ty: u8, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        match self.call(ty, body) {
            (t, b) if t == ty + 1 => b,
            (7, b) => panic!(
                "message {ty}: Rlerror {}",
                u32::from_le_bytes(b[..4].try_into().unwrap())
            ),
            (t, _) => panic!("message {ty}: reply type {t}"),
        }
    }

    /// The errno of a message that must fail.
    pub fn err(&mut self, ty: u8, body: impl FnOnce(&mut Writer)) -> i32 {
        let (t, b) = self.call(ty, body);
        assert_eq!(t, msg::RLERROR, "message {ty} should fail");
        i32::from_le_bytes(b[..4].try_into().unwrap())
    }

    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Result<Vec<Qid>, i32> {
        let (t, b) = self.call(msg::TWALK, |w| {
            w.u32(fid).u32(newfid).u16(names.len() as u16);
            for n in names {
                w.str(n.as_bytes());
            }
        });
        if t == msg::RLERROR {
            return Err(i32::from_le_bytes(b[..4].try_into().unwrap()));
        }
        let mut r = Reader::new(&b);
        let n = r.u16().unwrap();
        Ok((0..n).map(|_| qid(&mut r)).collect())
    }

    pub fn lopen(&mut self, fid: u32, flags: u32) -> Result<Qid, i32> {
        let (t, b) = self.call(msg::TLOPEN, |w| {
            w.u32(fid).u32(flags);
        });
        if t == msg::RLERROR {
            return Err(i32::from_le_bytes(b[..4].try_into().unwrap()));
        }
        Ok(qid(&mut Reader::new(&b)))
    }

    pub fn read(&mut self, fid: u32, off: u64, count: u32) -> Vec<u8> {
        let b = self.ok(msg::TREAD, |w| {
            w.u32(fid).u64(off).u32(count);
        });
        let mut r = Reader::new(&b);
        let n = r.u32().unwrap();
        r.bytes(n as usize).unwrap().to_vec()
    }

    /// Walks `path` from the root to `fid`, opens it read-only, reads it.
    pub fn cat(&mut self, fid: u32, path: &[&str]) -> Result<Vec<u8>, i32> {
        if self.walk(0, fid, path)?.len() != path.len() {
            return Err(libc::ENOENT);
        }
        let r = self.lopen(fid, 0).map(|_| self.read(fid, 0, 4096));
        self.ok(msg::TCLUNK, |w| {
            w.u32(fid);
        });
        r
    }

    pub fn clunk(&mut self, fid: u32) {
        self.ok(msg::TCLUNK, |w| {
            w.u32(fid);
        });
    }

    pub fn readdir(&mut self, fid: u32) -> Vec<String> {
        let mut names = Vec::new();
        let mut off = 0;
        loop {
            let b = self.ok(msg::TREADDIR, |w| {
                w.u32(fid).u64(off).u32(200);
            });
            let mut r = Reader::new(&b);
            let n = r.u32().unwrap() as usize;
            if n == 0 {
                break;
            }
            let mut e = Reader::new(r.bytes(n).unwrap());
            while let Ok(ty) = e.u8() {
                let _ = (ty, e.u32(), e.u64());
                off = e.u64().unwrap();
                e.u8().unwrap();
                names.push(String::from_utf8(e.str().unwrap().to_vec()).unwrap());
            }
        }
        names.sort();
        names
    }

    pub fn mkdir(&mut self, dfid: u32, name: &str) -> Result<Qid, i32> {
        let (t, b) = self.call(msg::TMKDIR, |w| {
            w.u32(dfid).str(name.as_bytes()).u32(0o755).u32(0);
        });
        if t == msg::RLERROR {
            return Err(i32::from_le_bytes(b[..4].try_into().unwrap()));
        }
        Ok(qid(&mut Reader::new(&b)))
    }

    pub fn lcreate(&mut self, fid: u32, name: &str, flags: u32, mode: u32) -> Result<Qid, i32> {
        let (t, b) = self.call(msg::TLCREATE, |w| {
            w.u32(fid).str(name.as_bytes()).u32(flags).u32(mode).u32(0);
        });
        if t == msg::RLERROR {
            return Err(i32::from_le_bytes(b[..4].try_into().unwrap()));
        }
        Ok(qid(&mut Reader::new(&b)))
    }

    pub fn write(&mut self, fid: u32, off: u64, data: &[u8]) -> Result<u32, i32> {
        let (t, b) = self.call(msg::TWRITE, |w| {
            w.u32(fid).u64(off).u32(data.len() as u32).bytes(data);
        });
        let v = u32::from_le_bytes(b[..4].try_into().unwrap());
        if t == msg::RLERROR {
            Err(v as i32)
        } else {
            Ok(v)
        }
    }

    pub fn getattr(&mut self, fid: u32) -> (Qid, u32, u64) {
        let b = self.ok(msg::TGETATTR, |w| {
            w.u32(fid).u64(0x7ff);
        });
        let mut r = Reader::new(&b);
        assert_eq!(r.u64().unwrap(), 0x7ff);
        let q = qid(&mut r);
        let mode = r.u32().unwrap();
        let (_uid, _gid, _nlink, _rdev) = (r.u32(), r.u32(), r.u64(), r.u64());
        (q, mode, r.u64().unwrap())
    }
}

const RDWR: u32 = 2;
const ENOENT: i32 = libc::ENOENT;

#[test]
fn version_negotiation() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    // Capped at our maximum, smaller ones accepted, tiny ones refused.
    let b = c.ok(msg::TVERSION, |w| {
        w.u32(16 << 20).str(b"9P2000.L");
    });
    assert_eq!(&b[..4], &MAX_MSIZE.to_le_bytes());
    let b = c.ok(msg::TVERSION, |w| {
        w.u32(8192).str(b"9P2000.L");
    });
    assert_eq!(&b[..4], &8192u32.to_le_bytes());
    assert_eq!(c.s.msize(), 8192);
    let b = c.ok(msg::TVERSION, |w| {
        w.u32(8192).str(b"9P2000.u");
    });
    assert_eq!(&b[4..], b"\x07\x00unknown");
    assert_eq!(
        c.err(msg::TVERSION, |w| {
            w.u32(100).str(b"9P2000.L");
        }),
        libc::EINVAL
    );
    // A new version forgets every fid.
    assert_eq!(c.walk(0, 1, &[]), Err(libc::EBADF));
}

#[test]
fn malformed_and_unknown_messages() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    assert_eq!(c.s.handle(&[1, 0, 0]), None, "no tag to answer");
    // A size larger than the message, a truncated body.
    let r =
        c.s.handle(&[200, 0, 0, 0, msg::TCLUNK, 1, 0, 0, 0])
            .unwrap();
    assert_eq!(r[4], msg::RLERROR);
    assert_eq!(
        c.err(msg::TCLUNK, |w| {
            w.u16(0);
        }),
        libc::EPROTO
    );
    assert_eq!(c.err(200, |_| {}), libc::EOPNOTSUPP);
    assert_eq!(
        c.err(msg::TGETATTR, |w| {
            w.u32(99).u64(0);
        }),
        libc::EBADF
    );
    // Too many walk elements.
    assert_eq!(c.walk(0, 1, &["a"; 17]), Err(libc::E2BIG));
    // Twrite whose count exceeds its data.
    c.walk(0, 1, &["hello"]).unwrap();
    c.lopen(1, RDWR).unwrap();
    assert_eq!(
        c.err(msg::TWRITE, |w| {
            w.u32(1).u64(0).u32(1000).bytes(b"abc");
        }),
        libc::EPROTO
    );
    assert_eq!(fs::read(t.p("share/hello")).unwrap(), b"hello, world\n");
    // xattrs are not served.
    assert_eq!(
        c.err(msg::TXATTRWALK, |w| {
            w.u32(0).u32(5).str(b"user.x");
        }),
        libc::EOPNOTSUPP
    );
}

#[test]
fn fid_table_is_bounded() {
    let t = Tmp::new();
    // A budget that is not the limit here (the per-session cap is).
    let budget = FdBudget::new(MAX_FIDS * FDS_PER_FID);
    let mut c = Client::with_budget(&t.share(), false, budget);
    for f in 1..MAX_FIDS as u32 {
        c.walk(0, f, &[]).unwrap();
    }
    assert_eq!(c.walk(0, MAX_FIDS as u32, &[]), Err(libc::EMFILE));
    // Replacing an existing fid (newfid == fid) still works.
    c.walk(1, 1, &[]).unwrap();
    assert_eq!(c.walk(0, 1, &[]), Err(libc::EEXIST));
}

#[test]
fn files_and_directories() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    assert_eq!(c.cat(1, &["hello"]).unwrap(), b"hello, world\n");
    assert_eq!(c.walk(0, 1, &["nope"]), Err(ENOENT));
    // Partial walk: the qids that worked, newfid not made.
    assert_eq!(c.walk(0, 1, &["sub", "nope"]).unwrap().len(), 1);
    assert_eq!(c.walk(1, 2, &[]), Err(libc::EBADF));
    // mkdir, create, write, read back, getattr.
    c.mkdir(0, "d").unwrap();
    assert!(t.p("share/d").is_dir());
    c.walk(0, 1, &["d"]).unwrap();
    let q = c.lcreate(1, "f", RDWR, 0o4644).unwrap();
    assert_eq!(q.ty, 0);
    assert_eq!(c.write(1, 0, b"abcdef").unwrap(), 6);
    assert_eq!(c.write(1, 6, b"gh").unwrap(), 2);
    assert_eq!(c.read(1, 2, 100), b"cdefgh");
    let m = fs::metadata(t.p("share/d/f")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o644, "set-uid dropped");
    let (q2, mode, size) = c.getattr(1);
    assert_eq!((q2, mode & 0o170000, size), (q, 0o100000, 8));
    c.ok(msg::TFSYNC, |w| {
        w.u32(1).u32(0);
    });
    // setattr: mode and size.
    c.ok(msg::TSETATTR, |w| {
        w.u32(1).u32(0x1 | 0x8).u32(0o600).u32(0).u32(0).u64(3);
        w.u64(0).u64(0).u64(0).u64(0);
    });
    let m = fs::metadata(t.p("share/d/f")).unwrap();
    assert_eq!((m.permissions().mode() & 0o777, m.len()), (0o600, 3));
    // mtime set explicitly.
    c.ok(msg::TSETATTR, |w| {
        w.u32(1).u32(0x20 | 0x100).u32(0).u32(0).u32(0).u64(0);
        w.u64(0).u64(0).u64(1_000_000).u64(5);
    });
    assert_eq!(fs::metadata(t.p("share/d/f")).unwrap().mtime(), 1_000_000);
    // readdir.
    c.walk(0, 2, &[]).unwrap();
    c.lopen(2, 0).unwrap();
    let names = c.readdir(2);
    assert_eq!(names, [".", "..", "d", "hello", "sub"]);
    // symlink, readlink, link, rename, renameat, unlinkat.
    c.ok(msg::TSYMLINK, |w| {
        w.u32(0).str(b"ln").str(b"d/f").u32(0);
    });
    c.walk(0, 3, &["ln"]).unwrap();
    let b = c.ok(msg::TREADLINK, |w| {
        w.u32(3);
    });
    assert_eq!(&b, b"\x03\x00d/f");
    c.walk(0, 4, &["hello"]).unwrap();
    c.ok(msg::TLINK, |w| {
        w.u32(0).u32(4).str(b"hello2");
    });
    assert_eq!(fs::metadata(t.p("share/hello")).unwrap().nlink(), 2);
    c.ok(msg::TRENAMEAT, |w| {
        w.u32(0).str(b"hello2").u32(0).str(b"hello3");
    });
    assert!(t.p("share/hello3").exists() && !t.p("share/hello2").exists());
    c.walk(0, 5, &["d"]).unwrap();
    c.ok(msg::TRENAME, |w| {
        w.u32(4).u32(5).str(b"moved");
    });
    assert!(t.p("share/d/moved").exists() && !t.p("share/hello").exists());
    c.ok(msg::TUNLINKAT, |w| {
        w.u32(0).str(b"hello3").u32(0);
    });
    assert!(!t.p("share/hello3").exists());
    c.ok(msg::TREMOVE, |w| {
        w.u32(4);
    });
    assert!(!t.p("share/d/moved").exists());
    assert_eq!(c.walk(4, 6, &[]), Err(libc::EBADF), "remove clunks");
    assert_eq!(
        c.err(msg::TUNLINKAT, |w| {
            w.u32(0).str(b"sub").u32(0x200);
        }),
        libc::ENOTEMPTY
    );
}

#[test]
fn statfs_lock_getlock() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    let b = c.ok(msg::TSTATFS, |w| {
        w.u32(0);
    });
    let mut r = Reader::new(&b);
    let (_ty, bsize) = (r.u32().unwrap(), r.u32().unwrap());
    assert!(bsize > 0);
    c.walk(0, 1, &["hello"]).unwrap();
    c.lopen(1, RDWR).unwrap();
    let b = c.ok(msg::TLOCK, |w| {
        w.u32(1).u8(1).u32(0).u64(0).u64(0).u32(42).str(b"guest");
    });
    assert_eq!(b, [0]);
    let b = c.ok(msg::TGETLOCK, |w| {
        w.u32(1).u8(1).u64(0).u64(10).u32(42).str(b"guest");
    });
    assert_eq!(b[0], 2, "unlocked");
    c.ok(msg::TFLUSH, |w| {
        w.u16(3);
    });
}

/// Every session of the process draws from one descriptor budget: a
/// guest that spends it gets ENFILE, a fid replaced in place costs
/// nothing more, and clunked or forgotten fids give theirs back.
#[test]
fn sessions_share_one_descriptor_budget() {
    let t = Tmp::new();
    let budget = FdBudget::new(4 * FDS_PER_FID);
    let mut a = Client::with_budget(&t.share(), false, budget.clone());
    let mut b = Client::with_budget(&t.share(), false, budget.clone());
    a.walk(0, 1, &[]).unwrap();
    b.walk(0, 1, &["hello"]).unwrap();
    assert_eq!(budget.used(), 4 * FDS_PER_FID);
    assert_eq!(a.walk(0, 2, &["sub"]), Err(libc::ENFILE));
    assert_eq!(b.walk(0, 2, &[]), Err(libc::ENFILE));
    // In place: walk onto itself, create through a fid.
    b.walk(1, 1, &[]).unwrap();
    a.lcreate(1, "new", 2, 0o644).unwrap();
    assert_eq!(budget.used(), 4 * FDS_PER_FID);
    a.clunk(1);
    a.walk(0, 2, &["sub"]).unwrap();
    // A new Tversion forgets a session's fids; so does its end.
    a.ok(msg::TVERSION, |w| {
        w.u32(MAX_MSIZE).str(b"9P2000.L");
    });
    assert_eq!(budget.used(), 2 * FDS_PER_FID);
    drop(b);
    assert_eq!(budget.used(), 0);
}

/// Tlcreate without O_EXCL of a name that exists opens that file, as
/// open(O_CREAT) does, and leaves its owner alone: only a file the
/// request created is given to the fid's user.
#[test]
fn lcreate_of_an_existing_file_keeps_its_owner() {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: ownership is only given away as root");
        return;
    }
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    // A second attach, for user 4321.
    c.ok(msg::TATTACH, |w| {
        w.u32(10).u32(u32::MAX).str(b"u").str(b"").u32(4321);
    });
    assert_eq!(fs::metadata(t.p("share/hello")).unwrap().uid(), 0);
    c.walk(10, 11, &[]).unwrap();
    c.lcreate(11, "hello", RDWR, 0o644).unwrap();
    let m = fs::metadata(t.p("share/hello")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "an existing file changed owner");
    assert_eq!(c.read(11, 0, 5), b"hello");
    // A file the request makes is the user's.
    c.walk(10, 12, &[]).unwrap();
    c.lcreate(12, "fresh", RDWR, 0o644).unwrap();
    assert_eq!(fs::metadata(t.p("share/fresh")).unwrap().uid(), 4321);
    // O_EXCL still refuses an existing name.
    c.walk(10, 13, &[]).unwrap();
    assert_eq!(
        c.lcreate(13, "hello", RDWR | 0o200, 0o644),
        Err(libc::EEXIST)
    );
}

/// No reply is larger than the negotiated msize: a link target that
/// cannot fit in the smallest msize is refused, not sent whole.
#[test]
fn replies_never_exceed_msize() {
    let t = Tmp::new();
    let target = "x".repeat(4095);
    std::os::unix::fs::symlink(&target, t.p("share/long")).unwrap();
    let mut c = Client::new(&t.share(), false);
    c.ok(msg::TVERSION, |w| {
        w.u32(4096).str(b"9P2000.L");
    });
    c.ok(msg::TATTACH, |w| {
        w.u32(0).u32(u32::MAX).str(b"root").str(b"").u32(0);
    });
    c.walk(0, 1, &["long"]).unwrap();
    let mut w = Writer::new(msg::TREADLINK, 7);
    w.u32(1);
    let r = c.s.handle(&w.finish()).unwrap();
    assert!(r.len() <= 4096, "a {}-byte reply with msize 4096", r.len());
    assert_eq!(r[4], msg::RLERROR);
    // With room, the target is read whole.
    c.ok(msg::TVERSION, |w| {
        w.u32(8192).str(b"9P2000.L");
    });
    c.ok(msg::TATTACH, |w| {
        w.u32(0).u32(u32::MAX).str(b"root").str(b"").u32(0);
    });
    c.walk(0, 1, &["long"]).unwrap();
    let b = c.ok(msg::TREADLINK, |w| {
        w.u32(1);
    });
    assert_eq!(Reader::new(&b).str().unwrap(), target.as_bytes());
}

/// Readdir's qids are built as walk's are (device mixed in): an entry
/// of a file system mounted inside the share gets the qid path its walk
/// reports, not the bare inode number (which may collide with one of the
/// share's own file system).
#[test]
fn readdir_qids_match_walk_qids_across_mounts() {
    // /proc is a mount of its own under /, the share here (read-only).
    let root = Path::new("/");
    if fs::metadata("/proc").unwrap().dev() == fs::metadata(root).unwrap().dev() {
        eprintln!("skipped: /proc is not a mount of its own");
        return;
    }
    let mut c = Client::new(root, true);
    let walked = c.walk(0, 2, &["proc", "version"]).unwrap()[1];
    c.walk(0, 1, &["proc"]).unwrap();
    c.lopen(1, 0).unwrap();
    let mut off = 0;
    let listed = 'find: loop {
        let b = c.ok(msg::TREADDIR, |w| {
            w.u32(1).u64(off).u32(4096);
        });
        let mut r = Reader::new(&b);
        let n = r.u32().unwrap() as usize;
        assert!(n > 0, "no `version` in /proc");
        let mut e = Reader::new(r.bytes(n).unwrap());
        while let Ok(ty) = e.u8() {
            let q = Qid {
                ty,
                version: e.u32().unwrap(),
                path: e.u64().unwrap(),
            };
            off = e.u64().unwrap();
            e.u8().unwrap();
            if e.str().unwrap() == b"version" {
                break 'find q;
            }
        }
    };
    assert_eq!(listed.path, walked.path, "readdir and walk disagree");
    assert_eq!(listed.ty, walked.ty);
}

/// A write for a user other than root clears the set-user-ID bit (and
/// set-group-ID when group-execute is set), as the kernel would for an
/// unprivileged writer: the root-run server's CAP_FSETID must not keep
/// them. Root's writes keep them, as root's own would.
#[test]
fn writes_clear_set_id_bits_unless_root() {
    // SAFETY: no arguments.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: without CAP_FSETID the kernel clears them itself");
        return;
    }
    let t = Tmp::new();
    let mode_of = |name: &str| fs::metadata(t.p(name)).unwrap().permissions().mode() & 0o7777;
    for (name, mode) in [
        ("suid", 0o6755),
        ("sgid", 0o2755),
        ("lock", 0o2644),
        ("mine", 0o6755),
    ] {
        fs::write(t.p(&format!("share/{name}")), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(
            t.p(&format!("share/{name}")),
            fs::Permissions::from_mode(mode),
        )
        .unwrap();
    }
    let mut c = Client::new(&t.share(), false);
    c.ok(msg::TATTACH, |w| {
        w.u32(10).u32(u32::MAX).str(b"u").str(b"").u32(1000);
    });
    for (i, name) in ["suid", "sgid", "lock"].iter().enumerate() {
        let fid = 11 + i as u32;
        c.walk(10, fid, &[name]).unwrap();
        c.lopen(fid, RDWR).unwrap();
        assert_eq!(c.write(fid, 0, b"#"), Ok(1));
    }
    assert_eq!(mode_of("share/suid"), 0o755, "set-uid kept");
    assert_eq!(mode_of("share/sgid"), 0o755, "set-gid kept");
    // Set-gid without group-execute is not a set-id program.
    assert_eq!(mode_of("share/lock"), 0o2644);
    // Root (fid 0's user) writes as root does.
    c.walk(0, 20, &["mine"]).unwrap();
    c.lopen(20, RDWR).unwrap();
    assert_eq!(c.write(20, 0, b"#"), Ok(1));
    assert_eq!(mode_of("share/mine"), 0o6755);
}

/// A Twalk of 16 `..` from deep in the share checks the way up to the
/// root once, not once per `..`: the `..` lookups stay near depth + 16
/// instead of 16 × depth.
#[test]
fn a_walk_of_many_dotdots_climbs_once() {
    const DEPTH: usize = 64;
    let t = Tmp::new();
    let names: Vec<String> = (0..DEPTH).map(|i| format!("d{i}")).collect();
    let mut deep = t.share();
    for n in &names {
        deep.push(n);
    }
    fs::create_dir_all(&deep).unwrap();
    let share = Arc::new(Share::open(&t.share(), false).unwrap());
    let mut c = Client {
        s: Server::new(share.clone()),
    };
    c.ok(msg::TVERSION, |w| {
        w.u32(MAX_MSIZE).str(b"9P2000.L");
    });
    c.ok(msg::TATTACH, |w| {
        w.u32(0).u32(u32::MAX).str(b"root").str(b"").u32(0);
    });
    // Down 64 levels, 16 at a time (MAXWELEM).
    let mut fid = 0;
    for chunk in names.chunks(16) {
        let n: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
        c.walk(fid, fid + 1, &n).unwrap();
        fid += 1;
    }
    let before = share.climbs();
    let up = c.walk(fid, 100, &[".."; 16]).unwrap();
    let climbs = share.climbs() - before;
    // The walk lands where it should: d47, which fid 3 stands for.
    assert_eq!((fid, up[15]), (4, c.getattr(3).0));
    assert!(
        climbs <= (DEPTH + 16 + 2) as u64,
        "{climbs} `..` lookups for one walk of 16 `..` at depth {DEPTH}"
    );
}
