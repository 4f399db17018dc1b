//! Every way out of the share we know of, tried through real
//! T-messages: `..` at the root, names with `/`, absolute and relative
//! symlinks pointing outside, a symlink swapped in during walks (rename
//! race), a directory moved out by the host, hard links, special files,
//! and a read-only share. Each test also checks the outside files are
//! untouched.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::server::tests::{Client, Tmp};
use super::wire::{msg, QTSYMLINK};

const RDWR: u32 = 2;

fn outside_intact(t: &Tmp) {
    assert_eq!(fs::read(t.p("outside/secret")).unwrap(), b"SECRET");
    assert_eq!(fs::read(t.p("secret")).unwrap(), b"SECRET");
    let names: Vec<_> = fs::read_dir(&t.base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "nothing created beside the share: {names:?}"
    );
}

#[test]
fn dotdot_at_root_stays_at_root() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    let root = c.getattr(0).0;
    assert_eq!(c.walk(0, 1, &[".."]).unwrap(), [root]);
    assert_eq!(c.getattr(1).0, root);
    assert_eq!(c.walk(0, 2, &["..", "..", ".."]).unwrap(), [root; 3]);
    assert_eq!(
        c.walk(0, 3, &["..", "secret"]).unwrap().len(),
        1,
        "short walk"
    );
    assert_eq!(c.walk(1, 3, &["secret"]), Err(libc::ENOENT));
    assert_eq!(c.walk(1, 3, &["outside"]), Err(libc::ENOENT));
    // `..` below the root climbs, up to the root and no further.
    let w = c
        .walk(0, 3, &["sub", "inner", "..", "..", "..", ".."])
        .unwrap();
    assert_eq!(&w[3..], [root; 3]);
    assert_eq!(c.walk(3, 4, &["hello"]).unwrap().len(), 1);
    assert_eq!(c.cat(5, &["sub", "..", "..", "secret"]), Err(libc::ENOENT));
    // A `..` fid cannot be removed or renamed: it has no entry name.
    assert_eq!(
        c.err(msg::TREMOVE, |w| {
            w.u32(1);
        }),
        libc::EBUSY
    );
    outside_intact(&t);
}

#[test]
fn names_with_slashes_or_dots_are_refused() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    for n in [
        "../secret",
        "../outside/secret",
        "sub/inner",
        "/etc",
        "a\0b",
        "",
    ] {
        assert_eq!(c.walk(0, 1, &[n]), Err(libc::EINVAL), "walk {n:?}");
    }
    assert_eq!(c.mkdir(0, "../escape"), Err(libc::EINVAL));
    assert_eq!(c.mkdir(0, ".."), Err(libc::EINVAL));
    assert_eq!(c.lcreate(0, "../escape", RDWR, 0o644), Err(libc::EINVAL));
    c.walk(0, 1, &[]).unwrap();
    assert_eq!(c.lcreate(1, "..", RDWR, 0o644), Err(libc::EINVAL));
    assert_eq!(
        c.err(msg::TSYMLINK, |w| {
            w.u32(0).str(b"../escape").str(b"x").u32(0);
        }),
        libc::EINVAL
    );
    assert_eq!(
        c.err(msg::TMKNOD, |w| {
            w.u32(0).str(b"../escape").u32(0o10644).u32(0).u32(0).u32(0);
        }),
        libc::EINVAL
    );
    assert_eq!(
        c.err(msg::TRENAMEAT, |w| {
            w.u32(0).str(b"hello").u32(0).str(b"../escape");
        }),
        libc::EINVAL
    );
    assert_eq!(
        c.err(msg::TRENAMEAT, |w| {
            w.u32(0).str(b"../secret").u32(0).str(b"stolen");
        }),
        libc::EINVAL
    );
    assert_eq!(
        c.err(msg::TUNLINKAT, |w| {
            w.u32(0).str(b"../secret").u32(0);
        }),
        libc::EINVAL
    );
    assert_eq!(
        c.err(msg::TUNLINKAT, |w| {
            w.u32(0).str(b"..").u32(0x200);
        }),
        libc::EINVAL
    );
    c.walk(0, 2, &["hello"]).unwrap();
    assert_eq!(
        c.err(msg::TLINK, |w| {
            w.u32(0).u32(2).str(b"../escape");
        }),
        libc::EINVAL
    );
    assert!(!t.p("share/stolen").exists());
    assert_eq!(fs::read(t.p("share/hello")).unwrap(), b"hello, world\n");
    outside_intact(&t);
}

#[test]
fn symlinks_pointing_outside_are_never_followed() {
    let t = Tmp::new();
    symlink(t.p("outside"), t.p("share/abs")).unwrap();
    symlink("../outside", t.p("share/rel")).unwrap();
    symlink(t.p("secret"), t.p("share/absfile")).unwrap();
    symlink("../secret", t.p("share/relfile")).unwrap();
    symlink("../outside/created", t.p("share/dangling")).unwrap();
    let mut c = Client::new(&t.share(), false);
    for dir in ["abs", "rel"] {
        // The symlink itself is reachable (as a symlink), not through.
        let w = c.walk(0, 1, &[dir, "secret"]).unwrap();
        assert_eq!(w.len(), 1, "{dir}: stopped at the link");
        assert_eq!(w[0].ty, QTSYMLINK);
        c.walk(0, 1, &[dir]).unwrap();
        assert_eq!(c.mkdir(1, "x"), Err(libc::ENOTDIR));
        assert_eq!(c.lcreate(1, "x", RDWR, 0o644), Err(libc::ENOTDIR));
        c.walk(0, 2, &["hello"]).unwrap();
        assert_eq!(
            c.err(msg::TLINK, |w| {
                w.u32(1).u32(2).str(b"x");
            }),
            libc::ENOTDIR
        );
        assert_eq!(
            c.err(msg::TRENAMEAT, |w| {
                w.u32(0).str(b"hello").u32(1).str(b"x");
            }),
            libc::ENOTDIR
        );
        assert_eq!(
            c.err(msg::TUNLINKAT, |w| {
                w.u32(1).str(b"secret").u32(0);
            }),
            libc::ENOTDIR
        );
        assert_eq!(c.lopen(1, 0), Err(libc::ELOOP));
        assert_eq!(
            c.err(msg::TREADDIR, |w| {
                w.u32(1).u64(0).u32(100);
            }),
            libc::EBADF
        );
        c.clunk(1);
        c.clunk(2);
    }
    for f in ["absfile", "relfile"] {
        assert_eq!(c.cat(1, &[f]), Err(libc::ELOOP), "{f}");
        c.walk(0, 1, &[f]).unwrap();
        let (_, mode, _) = c.getattr(1);
        assert_eq!(mode & 0o170000, 0o120000, "the link's own attributes");
        // Changing it must not change the target.
        assert_eq!(
            c.err(msg::TSETATTR, |w| {
                w.u32(1).u32(0x1).u32(0o777).u32(0).u32(0).u64(0);
                w.u64(0).u64(0).u64(0).u64(0);
            }),
            libc::EOPNOTSUPP
        );
        assert_eq!(
            c.err(msg::TSETATTR, |w| {
                w.u32(1).u32(0x8).u32(0).u32(0).u32(0).u64(0);
                w.u64(0).u64(0).u64(0).u64(0);
            }),
            libc::ELOOP
        );
        // readlink hands the target to the guest, which resolves it in
        // its own namespace.
        let b = c.ok(msg::TREADLINK, |w| {
            w.u32(1);
        });
        assert!(b.ends_with(b"secret"));
        c.clunk(1);
    }
    // Creating through a dangling link would create outside.
    assert_eq!(c.lcreate(0, "dangling", RDWR, 0o644), Err(libc::ELOOP));
    c.walk(0, 1, &[]).unwrap();
    assert!(c.lcreate(1, "dangling", RDWR | 0o200, 0o644).is_err());
    assert!(!t.p("outside/created").exists());
    let m = fs::metadata(t.p("outside/secret")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o644);
    outside_intact(&t);
}

/// A directory and a symlink to the outside swap places (atomically,
/// RENAME_EXCHANGE) as fast as the host can while the guest walks
/// through the name: the walk sees one or the other, never the outside.
#[test]
fn symlink_swapped_in_during_walks() {
    let t = Tmp::new();
    fs::create_dir(t.p("share/race")).unwrap();
    fs::write(t.p("share/race/f"), b"inside").unwrap();
    fs::write(t.p("outside/f"), b"SECRET").unwrap();
    symlink(t.p("outside"), t.p("share/stash")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, started, share) = (stop.clone(), started.clone(), t.share());
        std::thread::spawn(move || {
            started.store(true, Ordering::Relaxed);
            let dir = std::ffi::CString::new(share.into_os_string().into_encoded_bytes()).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: valid C strings and a directory descriptor.
                unsafe {
                    let fd = libc::open(dir.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
                    libc::renameat2(
                        fd,
                        c"race".as_ptr(),
                        fd,
                        c"stash".as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                    libc::close(fd);
                }
                n += 1;
            }
            n
        })
    };
    while !started.load(Ordering::Relaxed) {
        std::thread::yield_now();
    }
    let mut c = Client::new(&t.share(), false);
    let (mut inside, mut refused) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) && (inside < 50 || refused < 50) {
        // In one walk, and in two (the swap may land between them).
        for r in [c.cat(1, &["race", "f"]), {
            match c.walk(0, 2, &["race"]) {
                Ok(_) => {
                    let r = c.walk(2, 3, &["f"]).map(|_| ());
                    c.clunk(2);
                    r.and_then(|_| {
                        let r = c.lopen(3, 0).map(|_| c.read(3, 0, 100));
                        c.clunk(3);
                        r
                    })
                }
                Err(e) => Err(e),
            }
        }] {
            match r {
                Ok(data) => {
                    assert_eq!(data, b"inside", "read through the swapped-in link");
                    inside += 1;
                }
                // The link itself (walking through it, opening it), or
                // a lookup that met the exchange mid-way (tmpfs answers
                // a dcache miss during d_exchange with ENOENT).
                Err(libc::ENOTDIR | libc::ELOOP) => refused += 1,
                Err(libc::ENOENT) => {}
                Err(e) => panic!("unexpected errno {e}"),
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 10, "the race ran ({flips} swaps)");
    assert!(
        inside > 0 && refused > 0,
        "both sides seen: {inside} / {refused}"
    );
    outside_intact_race(&t);
}

fn outside_intact_race(t: &Tmp) {
    assert_eq!(fs::read(t.p("outside/f")).unwrap(), b"SECRET");
    outside_intact(t);
}

#[test]
fn directory_moved_out_by_the_host() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    c.walk(0, 1, &["sub", "inner"]).unwrap();
    fs::rename(t.p("share/sub"), t.p("outside/sub")).unwrap();
    // Its `..` now leads outside: refused.
    assert_eq!(c.walk(1, 2, &[".."]), Err(libc::EACCES));
    // The fid still names the moved file, but its entry is gone.
    fs::write(t.p("share/f"), b"x").unwrap();
    c.walk(0, 3, &["f"]).unwrap();
    fs::rename(t.p("share/f"), t.p("share/g")).unwrap();
    fs::write(t.p("share/f"), b"another").unwrap();
    assert_eq!(
        c.err(msg::TREMOVE, |w| {
            w.u32(3);
        }),
        libc::ESTALE
    );
    assert!(t.p("share/f").exists(), "not the file the fid names");
}

#[test]
fn hard_links_never_reach_outside_files() {
    let t = Tmp::new();
    symlink(t.p("secret"), t.p("share/link")).unwrap();
    let mut c = Client::new(&t.share(), false);
    c.walk(0, 1, &["link"]).unwrap();
    c.ok(msg::TLINK, |w| {
        w.u32(0).u32(1).str(b"hard");
    });
    // A link to the symlink itself, not to what it points to.
    let m = fs::symlink_metadata(t.p("share/hard")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(fs::metadata(t.p("secret")).unwrap().nlink(), 1);
    // Directories are not hard-linked.
    c.walk(0, 2, &["sub"]).unwrap();
    assert_eq!(
        c.err(msg::TLINK, |w| {
            w.u32(0).u32(2).str(b"sub2");
        }),
        libc::EPERM
    );
    outside_intact(&t);
}

#[test]
fn special_files_are_not_opened_or_made() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), false);
    // A character device (/dev/null's numbers): refused.
    assert_eq!(
        c.err(msg::TMKNOD, |w| {
            w.u32(0).str(b"null").u32(0o20666).u32(1).u32(3).u32(0);
        }),
        libc::EPERM
    );
    assert!(!t.p("share/null").exists());
    // A FIFO can be made but the host does not open it (it would block).
    c.ok(msg::TMKNOD, |w| {
        w.u32(0).str(b"fifo").u32(0o10644).u32(0).u32(0).u32(0);
    });
    c.walk(0, 1, &["fifo"]).unwrap();
    assert_eq!(c.lopen(1, 0), Err(libc::EOPNOTSUPP));
    // Nor through Tlcreate of the existing name (found in review: without
    // O_EXCL the create opened the FIFO and the worker blocked forever).
    c.walk(0, 2, &[]).unwrap();
    assert_eq!(c.lcreate(2, "fifo", 0, 0o644), Err(libc::EOPNOTSUPP));
}

#[test]
fn read_only_share_refuses_every_change() {
    let t = Tmp::new();
    let mut c = Client::new(&t.share(), true);
    assert_eq!(c.cat(1, &["hello"]).unwrap(), b"hello, world\n");
    c.walk(0, 1, &["hello"]).unwrap();
    assert_eq!(c.lopen(1, RDWR), Err(libc::EROFS));
    assert_eq!(c.lopen(1, 1), Err(libc::EROFS));
    assert_eq!(c.lopen(1, 0o1000), Err(libc::EROFS), "O_TRUNC");
    c.lopen(1, 0).unwrap();
    assert_eq!(c.write(1, 0, b"x"), Err(libc::EROFS));
    assert_eq!(c.mkdir(0, "d"), Err(libc::EROFS));
    c.walk(0, 2, &[]).unwrap();
    assert_eq!(c.lcreate(2, "f", RDWR, 0o644), Err(libc::EROFS));
    let e = |c: &mut Client, ty, body: &dyn Fn(&mut super::wire::Writer)| {
        assert_eq!(c.err(ty, |w| body(w)), libc::EROFS, "message {ty}");
    };
    e(&mut c, msg::TSYMLINK, &|w| {
        w.u32(0).str(b"l").str(b"x").u32(0);
    });
    e(&mut c, msg::TMKNOD, &|w| {
        w.u32(0).str(b"p").u32(0o10644).u32(0).u32(0).u32(0);
    });
    e(&mut c, msg::TLINK, &|w| {
        w.u32(0).u32(1).str(b"h");
    });
    e(&mut c, msg::TRENAMEAT, &|w| {
        w.u32(0).str(b"hello").u32(0).str(b"h");
    });
    e(&mut c, msg::TRENAME, &|w| {
        w.u32(1).u32(0).str(b"h");
    });
    e(&mut c, msg::TUNLINKAT, &|w| {
        w.u32(0).str(b"hello").u32(0);
    });
    e(&mut c, msg::TSETATTR, &|w| {
        w.u32(1).u32(0x8).u32(0).u32(0).u32(0).u64(0);
        w.u64(0).u64(0).u64(0).u64(0);
    });
    e(&mut c, msg::TSETATTR, &|w| {
        w.u32(1).u32(0x1).u32(0o777).u32(0).u32(0).u64(0);
        w.u64(0).u64(0).u64(0).u64(0);
    });
    c.walk(0, 3, &["hello"]).unwrap();
    e(&mut c, msg::TREMOVE, &|w| {
        w.u32(3);
    });
    assert_eq!(fs::read(t.p("share/hello")).unwrap(), b"hello, world\n");
    let names: Vec<_> = fs::read_dir(t.share()).unwrap().collect();
    assert_eq!(names.len(), 2, "nothing created");
}
