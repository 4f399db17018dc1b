//! virtio-net and virtio-9p driven by the C test guests `virtio_net_io`
//! and `virtio_p9_io`, in the legacy and the modern transport, every byte
//! checked on the host side.
//!
//! virtio-net: the guest's frames are captured on the tap with an
//! AF_PACKET socket and compared byte for byte with the frames the guest
//! says it sent; frames injected through the same socket must reach the
//! guest intact (it compares them and reports their FNV-1a). The tap
//! lives in a network namespace the test creates (root, iproute2).
//!
//! virtio-9p: the guest reads, writes, renames and lists inside a share
//! the test prepared, and tries the escapes (`..`, symlinks out of the
//! share, names with `/`, renames and unlinks across the boundary); the
//! test then checks the share's files and that nothing outside changed.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bhyve_testguests::{fnv1a, PASS_STATUS};
use common::net::*;
use common::vm::*;
use common::*;

struct NetRun {
    transport: &'static str,
    mrg: bool,
    mtu: Option<u16>,
    frames: u32,
    rxframes: u32,
}

fn net_run(tag: &str, r: NetRun, vmm: Vmm) {
    assert!(
        is_root(),
        "this test creates a network namespace and a tap: run it as root"
    );
    let s = Scratch::new(tag);
    let guest = s.guest("virtio_net_io");
    let ns = Netns::new(tag);
    let sock = ns.packet_socket("tap0");
    let mac = [0x02, 0x62, 0x68, 0x79, 0x76, 0x65];
    let cmdline = format!(
        "transport={} mrg={} frames={} rxframes={}",
        r.transport,
        u8::from(r.mrg),
        r.frames,
        r.rxframes
    );
    let cmd = match vmm {
        Vmm::Bhyve => {
            let mut slot = format!("5,virtio-net,tap0,mac={}", mac_text(&mac));
            if let Some(m) = r.mtu {
                slot += &format!(",mtu={m}");
            }
            let mut cmd = ns.cmd(&[BHYVE]);
            cmd.args(bhyve_args(&guest, &slot, &cmdline))
                .env("BHYVE_RUNDIR", s.rundir());
            cmd
        }
        Vmm::Qemu => {
            let mut dev = format!("virtio-net-pci,netdev=n0,mac={}", mac_text(&mac));
            if let Some(m) = r.mtu {
                dev += &format!(",host_mtu={m}");
            }
            let mut cmd = ns.cmd(&["qemu-system-x86_64"]);
            cmd.args(qemu_args(&guest, &cmdline)).args([
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
                "-device",
                &dev,
            ]);
            cmd
        }
    };
    let mut vm = Running::spawn(cmd);

    // Capture the guest's frames; once it says it is receiving, send ours.
    let mut captured = Vec::new();
    let mut injected = false;
    let t0 = Instant::now();
    let status = loop {
        if let Some(f) = recv_frame(&sock) {
            if f.len() >= 14 && f[6..12] == mac && f[12..14] == ETHERTYPE.to_be_bytes() {
                captured.push(f);
            }
        }
        if !injected && vm.stdout().contains("virtio_net_io: receiving") {
            injected = true;
            for i in 0..r.rxframes {
                let seq = RX_SEQ0 + i;
                send_frame(&sock, &frame(seq, frame_len(seq, MAX_FRAME), mac, HOST_MAC));
            }
        }
        if let Some(st) = vm.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "virtio_net_io did not finish within {DEADLINE:?}\n{}",
            vm.report()
        );
    };
    while let Some(f) = recv_frame(&sock) {
        if f.len() >= 14 && f[6..12] == mac && f[12..14] == ETHERTYPE.to_be_bytes() {
            captured.push(f);
        }
    }
    std::thread::sleep(Duration::from_millis(100)); // readers catch up
    let out = vm.stdout();
    let report = vm.report();
    assert_eq!(status.code(), Some(PASS_STATUS), "{report}");
    let out = guest_lines(&out, "virtio_net_io");

    let hdr = if r.transport == "modern" || r.mrg {
        12
    } else {
        10
    };
    assert!(
        out.contains(&format!("virtio_net_io: header {hdr} bytes\n")),
        "{report}"
    );
    assert!(
        out.contains(&format!("virtio_net_io: mac {}\n", mac_text(&mac))),
        "{report}"
    );
    assert!(out.contains("virtio_net_io: link up\n"), "{report}");
    let maxlen = match r.mtu {
        Some(m) => {
            assert!(
                out.contains(&format!("virtio_net_io: mtu {m}\n")),
                "{report}"
            );
            (usize::from(m) + 14).min(MAX_FRAME)
        }
        None => {
            assert!(out.contains("virtio_net_io: no mtu offered\n"), "{report}");
            MAX_FRAME
        }
    };

    // Guest → host: every frame, in order, exactly as the rule says.
    assert_eq!(
        captured.len(),
        r.frames as usize,
        "frames captured on the tap\n{report}"
    );
    for (seq, got) in captured.iter().enumerate() {
        let seq = seq as u32;
        let want = frame(seq, frame_len(seq, maxlen), [0xff; 6], mac);
        assert!(*got == want, "tx frame {seq} differs on the tap\n{report}");
        let line = format!(
            "virtio_net_io: tx {seq} len {} fnv1a {:x}\n",
            want.len(),
            fnv1a(&want)
        );
        assert!(out.contains(&line), "missing {line:?}\n{report}");
    }
    // Host → guest: the guest compared them; its hashes must be ours.
    for i in 0..r.rxframes {
        let seq = RX_SEQ0 + i;
        let want = frame(seq, frame_len(seq, MAX_FRAME), mac, HOST_MAC);
        let line = format!(
            "virtio_net_io: rx {seq:x} len {} fnv1a {:x}\n",
            want.len(),
            fnv1a(&want)
        );
        assert!(out.contains(&line), "missing {line:?}\n{report}");
    }
    assert!(out.contains("virtio_net_io: done\n"), "{report}");
}

#[test]
fn virtio_net_legacy_frames_both_ways() {
    net_run(
        "vnet-leg",
        NetRun {
            transport: "legacy",
            mrg: false,
            mtu: None,
            frames: 12,
            rxframes: 6,
        },
        Vmm::Bhyve,
    );
}

#[test]
fn virtio_net_legacy_mergeable_with_mtu() {
    net_run(
        "vnet-legm",
        NetRun {
            transport: "legacy",
            mrg: true,
            mtu: Some(1400),
            frames: 12,
            rxframes: 6,
        },
        Vmm::Bhyve,
    );
}

#[test]
fn virtio_net_modern_frames_both_ways() {
    net_run(
        "vnet-mod",
        NetRun {
            transport: "modern",
            mrg: false,
            mtu: Some(1280),
            frames: 12,
            rxframes: 6,
        },
        Vmm::Bhyve,
    );
}

#[test]
fn virtio_net_modern_mergeable() {
    net_run(
        "vnet-modm",
        NetRun {
            transport: "modern",
            mrg: true,
            mtu: None,
            frames: 12,
            rxframes: 6,
        },
        Vmm::Bhyve,
    );
}

const TAG: &str = "hostshare";
const SECRET: &[u8] = b"the secret next to the share\n";

/// `BOX/share` (hello.txt, sub/inner.txt, up -> .., etc -> /etc) and
/// `BOX/secret` beside it; BOX holds nothing else, so any change outside
/// the share shows in its tree.
fn make_share(s: &Scratch) -> (PathBuf, PathBuf, Vec<u8>) {
    let outer = s.dir.join("box");
    let share = outer.join("share");
    std::fs::create_dir_all(&share).unwrap();
    // Longer than one 8 KiB message, so reads take several requests.
    let hello: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(share.join("hello.txt"), &hello).unwrap();
    std::fs::set_permissions(
        share.join("hello.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::create_dir(share.join("sub")).unwrap();
    std::fs::write(share.join("sub/inner.txt"), b"inner\n").unwrap();
    std::os::unix::fs::symlink("..", share.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", share.join("etc")).unwrap();
    std::fs::write(outer.join("secret"), SECRET).unwrap();
    (outer, share, hello)
}

/// Every path under `dir` (symlinks not followed), relative to it.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.symlink_metadata().unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

fn p9_run(tag: &str, transport: &str, ro: bool, vmm: Vmm) {
    let s = Scratch::new(tag);
    let guest = s.guest("virtio_p9_io");
    let (outer, share, hello) = make_share(&s);
    let before = tree(&outer);
    let cmdline = format!("transport={transport} ro={}", u8::from(ro));
    let o: Output = match vmm {
        Vmm::Bhyve => {
            let mut slot = format!("6,virtio-9p,{TAG}={}", share.display());
            if ro {
                slot += ",ro";
            }
            wait_deadline(
                s.command(&[])
                    .args(bhyve_args(&guest, &slot, &cmdline))
                    .spawn()
                    .unwrap(),
            )
        }
        Vmm::Qemu => {
            let fsdev = format!(
                "local,id=f0,path={},security_model=none{}",
                share.display(),
                if ro { ",readonly=on" } else { "" }
            );
            let dev = format!("virtio-9p-pci,fsdev=f0,mount_tag={TAG}");
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args(qemu_args(&guest, &cmdline))
                .args(["-fsdev", &fsdev, "-device", &dev])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            wait_deadline(cmd.spawn().unwrap())
        }
    };
    let report = format!("stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{report}");
    let out = guest_lines(&stdout(&o), "virtio_p9_io");
    let has = |l: &str| assert!(out.contains(l), "missing {l:?}\n{report}");

    has(&format!("virtio_p9_io: tag {TAG}\n"));
    has("virtio_p9_io: version 9P2000.L msize 8192\n");
    let ino = std::fs::metadata(&share).unwrap().ino();
    has(&format!("virtio_p9_io: attach qid type 80 path {ino:x}\n"));
    has(&format!(
        "virtio_p9_io: read hello.txt {} bytes fnv1a {:x}\n",
        hello.len(),
        fnv1a(&hello)
    ));
    has(&format!(
        "virtio_p9_io: getattr hello.txt mode 81a4 size {}\n",
        hello.len()
    ));
    has("virtio_p9_io: refused walk to a missing file: errno 2\n");
    has("virtio_p9_io: walk .. stays at the root\n");
    has("virtio_p9_io: walk sub .. .. stays at the root\n");
    has("virtio_p9_io: walk up/secret stops at the symlink\n");
    has("virtio_p9_io: walk etc/passwd stops at the symlink\n");
    has("virtio_p9_io: readlink up ..\n");
    for what in [
        "lopen of the symlink up",
        "mkdir in the symlink up",
        "renameat hello.txt into the symlink up",
        "unlinkat secret in the symlink up",
        "lcreate in the symlink up",
        "lcreate ../escaped",
        "lcreate sub/../../escaped",
        "lcreate ..",
        "mkdir ../escaped",
        "renameat hello.txt to ../escaped",
        "renameat ../secret into the share",
        "renameat .. to inside",
        "unlinkat ../secret",
        "unlinkat ..",
    ] {
        has(&format!("virtio_p9_io: refused {what}: errno "));
    }
    has("virtio_p9_io: clunked\n");
    has("virtio_p9_io: done\n");

    // Nothing outside the share changed; the secret is intact.
    assert_eq!(std::fs::read(outer.join("secret")).unwrap(), SECRET);
    assert_eq!(std::fs::read(share.join("hello.txt")).unwrap(), hello);
    assert!(!Path::new("/etc/escaped").exists());
    let after = tree(&outer);
    let outside = |t: &BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
        t.iter()
            .filter(|p| !p.starts_with("share"))
            .cloned()
            .collect()
    };
    assert_eq!(outside(&after), outside(&before), "{report}");

    // The guest's listing is the share's (taken after its changes).
    let listed: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("virtio_p9_io: readdir "))
        .map(str::to_owned)
        .collect();
    let mut names: BTreeSet<String> = std::fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.extend([".".to_owned(), "..".to_owned()]);
    assert_eq!(listed, names, "{report}");

    if ro {
        has("virtio_p9_io: refused lcreate on a read-only share: errno 30\n");
        has("virtio_p9_io: refused lopen for writing on a read-only share: errno 30\n");
        has("virtio_p9_io: refused mkdir on a read-only share: errno 30\n");
        assert_eq!(after, before, "the read-only share changed\n{report}");
        return;
    }
    let written: Vec<u8> = (0..3000u32)
        .map(|i| (i * 31 + (i >> 7) + 5) as u8)
        .collect();
    has(&format!(
        "virtio_p9_io: wrote new.txt 3000 bytes fnv1a {:x}\n",
        fnv1a(&written)
    ));
    has("virtio_p9_io: mkdir newdir\n");
    // On a writable share the escapes are refused for what they are, not
    // because writing is off.
    assert!(
        !out.contains("errno 30\n"),
        "EROFS on a writable share\n{report}"
    );
    has("virtio_p9_io: renamed new.txt to renamed.txt\n");
    has("virtio_p9_io: refused renameat to ..: errno ");
    assert_eq!(std::fs::read(share.join("renamed.txt")).unwrap(), written);
    assert!(!share.join("new.txt").exists());
    assert!(share.join("newdir").is_dir());
    let mut want = before.clone();
    want.insert("share/renamed.txt".into());
    want.insert("share/newdir".into());
    assert_eq!(after, want, "{report}");
}

#[test]
fn virtio_9p_legacy_in_the_share_and_escapes_refused() {
    p9_run("v9p-leg", "legacy", false, Vmm::Bhyve);
}

#[test]
fn virtio_9p_modern_in_the_share_and_escapes_refused() {
    p9_run("v9p-mod", "modern", false, Vmm::Bhyve);
}

#[test]
fn virtio_9p_read_only_share_refuses_writes() {
    p9_run("v9p-ro", "modern", true, Vmm::Bhyve);
}

#[test]
fn virtio_net_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    net_run(
        "vnet-qleg",
        NetRun {
            transport: "legacy",
            mrg: false,
            mtu: None,
            frames: 12,
            rxframes: 6,
        },
        Vmm::Qemu,
    );
    net_run(
        "vnet-qmod",
        NetRun {
            transport: "modern",
            mrg: true,
            mtu: Some(1400),
            frames: 12,
            rxframes: 6,
        },
        Vmm::Qemu,
    );
}

#[test]
fn virtio_p9_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    p9_run("v9p-qleg", "legacy", false, Vmm::Qemu);
    p9_run("v9p-qmod", "modern", false, Vmm::Qemu);
    p9_run("v9p-qro", "modern", true, Vmm::Qemu);
}
