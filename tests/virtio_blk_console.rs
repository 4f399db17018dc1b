//! The C test guests (payload at CPL3) under bhyve: the runtime itself
//! (`c_runtime`), then the virtio-blk and virtio-console data paths in
//! both transports, checked from the host side (the disk file, the port's
//! socket). The guests are validated under QEMU too when it is present.

mod common;

use std::path::Path;

use bhyve_testguests::{exit_status, EXIT_BAD_CMDLINE, EXIT_FAIL, PASS_STATUS};
use common::disk::*;
use common::vm::*;
use common::*;

#[test]
fn c_runtime_under_bhyve() {
    let s = Scratch::new("c-runtime");
    let o = s.run_guest(
        "c_runtime",
        &["3,virtio-rnd"],
        Some("a=b echo=word num=0x2a"),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{out}{}", stderr(&o));
    assert_eq!(
        own_lines(&out, "c_runtime"),
        [
            "c_runtime: hello from C at CPL3",
            "c_runtime: format beef 123456789abc -42 -5000000000 4000000000 \
             18000000000000000000 z str 0x1000 -0012| ab|",
            "c_runtime: echo word",
            "c_runtime: num 42",
            "c_runtime: fnv1a 811c9dc5 e40c292c",
            "c_runtime: pci 0 1275:1275",
            "c_runtime: pci 3 1af4:1005",
            "c_runtime: done",
        ]
    );
}

/// Runs `guest` with no device but the serial port and pc-testdev,
/// `mem` of RAM and the `-o` settings `opts`, and checks that it gives
/// up with the guest status `code` after printing only `line`.
fn assert_guest_refuses(test: &str, guest: &str, mem: &str, opts: &[&str], code: u32, line: &str) {
    let s = Scratch::new(test);
    let kernel = kernel_opt(&s.guest(guest));
    let mut args = vec![
        "-l",
        "com1,stdio",
        "-l",
        "pc-testdev",
        "-m",
        mem,
        "-o",
        &kernel,
    ];
    for o in opts {
        args.extend(["-o", o]);
    }
    args.push("vm0");
    let o = s.run(&args);
    assert_eq!(o.status.code(), Some(exit_status(code)), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{line}\n"), "{}", stderr(&o));
}

#[test]
fn c_runtime_needs_64_mib() {
    // The heap (48 MiB from 16 MiB) does not fit: one line, status 35.
    assert_guest_refuses(
        "c-runtime-small",
        "c_runtime",
        "32M",
        &[],
        EXIT_FAIL,
        "tg: less than 48 MiB of RAM from 16 MiB",
    );
}

#[test]
fn c_runtime_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("c-runtime-qemu");
    let (st, out) = run_qemu(&s.guest("c_runtime"), "num=5", &[]);
    assert_eq!(st, Some(PASS_STATUS), "{out}");
    let l = own_lines(&out, "c_runtime");
    assert!(l.contains(&"c_runtime: no echo"), "{out}");
    assert!(l.contains(&"c_runtime: num 5"), "{out}");
    assert!(l.contains(&"c_runtime: pci 0 8086:29c0"), "{out}");
    assert_eq!(l.last(), Some(&"c_runtime: done"), "{out}");
}

// ---- virtio-blk -------------------------------------------------------------

const SECTOR: u64 = 512;
const DISK_BYTES: usize = 8 << 20;
/// `virtio_blk_io`'s pattern writes: (first sector, sectors).
const PATTERN_WRITES: [(u64, u64); 4] = [(8, 8), (1000, 128), (3001, 64), (16383, 1)];
/// Its range requests: discard, write-zeroes, write-zeroes with UNMAP.
const DISCARD: (u64, u64) = (4096, 2048);
const ZEROES: (u64, u64) = (8192, 2048);
const ZEROES_UNMAP: (u64, u64) = (10240, 2048);

fn byte_range((sector, n): (u64, u64)) -> std::ops::Range<usize> {
    (sector * SECTOR) as usize..((sector + n) * SECTOR) as usize
}

/// The disk `virtio_blk_io` must leave behind, discarded range zero.
fn expected_disk(before: &[u8]) -> Vec<u8> {
    let mut d = before.to_vec();
    for w in PATTERN_WRITES {
        for o in byte_range(w) {
            d[o] = bhyve_testguests::virtio_blk_io_pattern(o as u64);
        }
    }
    for r in [DISCARD, ZEROES, ZEROES_UNMAP] {
        d[byte_range(r)].fill(0);
    }
    d
}

/// The lines a passing run prints, but for the topology and discard
/// configuration (they follow the host's physical block size).
fn blk_expected(transport: &str, before: &[u8], after: &[u8], ro: &[u8]) -> Vec<String> {
    let (offered, taken) = if transport == "modern" {
        (0x1_3000_6644u64, 0x1_1000_6644u64)
    } else {
        (0x3000_6644, 0x1000_6644)
    };
    let names = "seg_max blk_size flush topology discard write_zeroes indirect_desc";
    let v1 = if transport == "modern" {
        " version_1"
    } else {
        ""
    };
    let hash = bhyve_testguests::fnv1a;
    [
        format!("transport {transport}"),
        "function 0x3 0x0".into(),
        format!("offered {offered:#x} {names} event_idx{v1}"),
        format!("taken {taken:#x} {names}{v1}"),
        "capacity 0x4000 sectors".into(),
        "seg_max 0x7e".into(),
        "blk_size 0x200".into(),
        "write_zeroes max 0x8000 seg 0x1 may_unmap 0x1".into(),
        "serial TESTSERIAL42".into(),
        format!("read 0x4000 sectors fnv1a {:#x}", hash(before)),
        "write single sector 0x8 0x8 sectors 0x1 descriptors ok".into(),
        "write multi sector 0x3e8 0x80 sectors 0x10 descriptors ok".into(),
        "write indirect sector 0xbb9 0x40 sectors 0x8 descriptors ok".into(),
        "write last sector 0x3fff 0x1 sectors 0x2 descriptors ok".into(),
        "flush ok".into(),
        "discard sector 0x1000 0x800 sectors ok".into(),
        "write_zeroes sector 0x2000 0x800 sectors ok".into(),
        "write_zeroes unmap sector 0x2800 0x800 sectors ok".into(),
        "flush ok".into(),
        "discarded range reads zero".into(),
        format!(
            "read back 0x4000 sectors fnv1a {:#x} as expected",
            hash(after)
        ),
        "read past the end: ioerr".into(),
        "read across the end: ioerr".into(),
        "unknown type: unsupp".into(),
        "ro disk ro offered".into(),
        "ro disk write: ioerr".into(),
        format!("ro disk sector 0 fnv1a {:#x}", hash(&ro[..512])),
        "done".into(),
    ]
    .into_iter()
    .map(|l| format!("virtio_blk_io: {l}"))
    .collect()
}

fn blk_run(transport: &str) {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new(&format!("blk-io-{transport}"));
    let before = noise(DISK_BYTES, 0x9e37_79b9_7f4a_7c15);
    let ro = noise(1 << 20, 42);
    let disk = s.file("disk.img", &before);
    let ro_disk = s.file("ro.img", &ro);
    let blocks_before = std::fs::metadata(&disk).unwrap().blocks();
    let blk = format!("3,virtio-blk,{},ser=TESTSERIAL42", disk.display());
    let blk_ro = format!("4,virtio-blk,{},ro", ro_disk.display());
    let cmdline = format!("transport={transport}");
    let o = s.run_guest("virtio_blk_io", &[&blk, &blk_ro], Some(&cmdline));
    let out = stdout(&o);
    let raw = format!("{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{raw}");

    // Byte for byte on the host, after bhyve exited.
    let after = std::fs::read(&disk).unwrap();
    assert_eq!(after.len(), DISK_BYTES);
    let what = format!("{transport}: disk");
    compare(&what, &after, &expected_disk(&before), &before, &raw);
    assert_eq!(std::fs::read(&ro_disk).unwrap(), ro, "the ro disk changed");
    // Discard and write-zeroes with UNMAP punch holes.
    let f = std::fs::File::open(&disk).unwrap();
    assert!(is_hole(&f, byte_range(DISCARD)), "{transport}: discard");
    assert!(
        is_hole(&f, byte_range(ZEROES_UNMAP)),
        "{transport}: write_zeroes unmap"
    );
    // Two 1 MiB holes (2048 blocks each), less the few blocks the file
    // system may spend on splitting its extent tree.
    let blocks_after = f.metadata().unwrap().blocks();
    assert!(
        blocks_after + 2 * 2048 - 64 <= blocks_before,
        "{transport}: st_blocks {blocks_before} → {blocks_after}"
    );

    let mut got = own_lines(&out, "virtio_blk_io");
    let topology = got
        .iter()
        .position(|l| l.starts_with("virtio_blk_io: topology exp "));
    assert!(topology.is_some(), "{raw}");
    got.remove(topology.unwrap());
    let discard = got
        .iter()
        .position(|l| l.starts_with("virtio_blk_io: discard max 0x8000 seg 0x1 align "));
    assert!(discard.is_some(), "{raw}");
    got.remove(discard.unwrap());
    assert_eq!(got, blk_expected(transport, &before, &after, &ro), "{raw}");
}

#[test]
fn virtio_blk_io_legacy() {
    blk_run("legacy");
}

#[test]
fn virtio_blk_io_modern() {
    blk_run("modern");
}

#[test]
fn virtio_blk_io_needs_a_transport() {
    assert_guest_refuses(
        "blk-io-cmdline",
        "virtio_blk_io",
        "256M",
        &["boot.cmdline=transport=pci"],
        EXIT_BAD_CMDLINE,
        "virtio_blk_io: transport=legacy|modern required",
    );
}

/// The same guest under QEMU's virtio-blk-pci leaves the same disk.
#[test]
fn virtio_blk_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("blk-io-qemu");
    let before = noise(DISK_BYTES, 7);
    let guest = s.guest("virtio_blk_io");
    for transport in ["legacy", "modern"] {
        let disk = s.file("disk.img", &before);
        let drive = format!(
            "file={},if=none,id=d0,format=raw,discard=unmap",
            disk.display()
        );
        let (st, out) = run_qemu(
            &guest,
            &format!("transport={transport}"),
            &[
                "-drive",
                &drive,
                "-device",
                "virtio-blk-pci,drive=d0,serial=Q",
            ],
        );
        assert_eq!(st, Some(PASS_STATUS), "{out}");
        let after = std::fs::read(&disk).unwrap();
        assert!(after == expected_disk(&before), "{transport}: {out}");
        assert!(
            out.contains("virtio_blk_io: no second disk\n"),
            "{transport}: {out}"
        );
    }
}

// ---- virtio-console ---------------------------------------------------------

/// What `virtio_console_io` sends, repeated.
const CONSOLE_TEXT: &[u8] = b"virtio_console_io: bytes from the guest\n";

/// Connects to `path` once it exists, checks the guest's `txlen` bytes,
/// then writes `rx` to the guest.
fn console_client(path: &Path, txlen: usize, rx: &[u8]) -> Result<(), String> {
    use std::io::{Read, Write};
    let t0 = std::time::Instant::now();
    let mut sock = loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > std::time::Duration::from_secs(20) => {
                return Err(format!("connect {}: {e}", path.display()))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut got = vec![0u8; txlen];
    sock.read_exact(&mut got)
        .map_err(|e| format!("reading the guest's bytes: {e}"))?;
    let want: Vec<u8> = CONSOLE_TEXT.iter().copied().cycle().take(txlen).collect();
    if got != want {
        return Err(format!(
            "guest sent {:?}",
            String::from_utf8_lossy(&got[..got.len().min(200)])
        ));
    }
    sock.write_all(rx).map_err(|e| format!("writing: {e}"))?;
    // Stay connected until bhyve is gone (the guest reads at its pace).
    let _ = sock.read(&mut [0u8; 1]);
    Ok(())
}

/// Runs `virtio_console_io` against `-s 3,virtio-console,PORTS` (named
/// `names`, sockets in the scratch directory) and talks to port `use_port`.
fn console_run(transport: &str, names: &[&str], use_port: usize, txlen: usize, rxlen: usize) {
    let s = Scratch::new(&format!("con-io-{transport}-{}", names.len()));
    let socks: Vec<_> = names
        .iter()
        .map(|n| s.dir.join(format!("{n}.sock")))
        .collect();
    let spec: Vec<String> = names
        .iter()
        .zip(&socks)
        .map(|(n, p)| format!("{n}={}", p.display()))
        .collect();
    let dev = format!("3,virtio-console,{}", spec.join(","));
    let cmdline = format!(
        "transport={transport} port={} txlen={txlen} rxlen={rxlen}",
        names[use_port]
    );
    let child = s
        .guest_command("virtio_console_io", &[&dev], Some(&cmdline))
        .spawn()
        .unwrap();
    let rx = noise(rxlen, 0x5eed + rxlen as u64);
    let path = socks[use_port].clone();
    let rx2 = rx.clone();
    let client = std::thread::spawn(move || console_client(&path, txlen, &rx2));
    let o = wait_deadline(child);
    let out = stdout(&o);
    let raw = format!("{out}{}", stderr(&o));
    client
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{raw}"));
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{raw}");

    let modern = transport == "modern";
    let (offered, taken) = if modern {
        (
            "0x130000003 size multiport indirect_desc event_idx version_1",
            "0x100000002 multiport version_1",
        )
    } else {
        (
            "0x30000003 size multiport indirect_desc event_idx",
            "0x2 multiport",
        )
    };
    let sent: Vec<u8> = CONSOLE_TEXT.iter().copied().cycle().take(txlen).collect();
    let hash = bhyve_testguests::fnv1a;
    let mut want = vec![
        format!("transport {transport}"),
        "function 0x3 0x0".into(),
        format!("offered {offered}"),
        format!("taken {taken}"),
        "max_nr_ports 0x10".into(),
        "device_ready sent".into(),
    ];
    for (i, n) in names.iter().enumerate() {
        want.push(format!("device_add {i:#x}"));
        want.push(format!("port_name {i:#x} {n}"));
    }
    let rxq = if use_port == 0 { 0 } else { 2 * (use_port + 1) };
    want.extend([
        format!("port_open {use_port:#x} 0x1"),
        format!("port {use_port:#x} queues {rxq:#x} {:#x}", rxq + 1),
        format!("sent {txlen:#x} bytes fnv1a {:#x}", hash(&sent)),
        format!("received {rxlen:#x} bytes fnv1a {:#x}", hash(&rx)),
        "done".into(),
    ]);
    let want: Vec<String> = want
        .into_iter()
        .map(|l| format!("virtio_console_io: {l}"))
        .collect();
    assert_eq!(own_lines(&out, "virtio_console_io"), want, "{raw}");
}

#[test]
fn virtio_console_io_legacy() {
    console_run("legacy", &["port1"], 0, 3000, 4096);
}

#[test]
fn virtio_console_io_modern() {
    console_run("modern", &["port1"], 0, 3000, 4096);
}

/// The second of two ports (queues 4/5), more bytes than the guest's
/// receive buffers hold at once; the first port has no client.
#[test]
fn virtio_console_io_second_port() {
    console_run("modern", &["port1", "org.test.two"], 1, 10000, 20000);
    console_run("legacy", &["port1", "org.test.two"], 1, 1, 1);
}

/// The same guest under QEMU's virtio-serial (its port 1: queues 4/5).
#[test]
fn virtio_console_io_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("con-io-qemu");
    let guest = s.guest("virtio_console_io");
    for transport in ["legacy", "modern"] {
        let sock = s.dir.join(format!("{transport}.sock"));
        let chardev = format!("socket,id=c0,path={},server=on,wait=off", sock.display());
        let rx = noise(4096, 3);
        let rx2 = rx.clone();
        let client = std::thread::spawn(move || console_client(&sock, 3000, &rx2));
        let (st, out) = run_qemu(
            &guest,
            &format!("transport={transport}"),
            &[
                "-device",
                "virtio-serial-pci",
                "-chardev",
                &chardev,
                "-device",
                "virtserialport,chardev=c0,name=port1",
            ],
        );
        client
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(st, Some(PASS_STATUS), "{out}");
        let want = format!(
            "virtio_console_io: received 0x1000 bytes fnv1a {:#x}\n",
            bhyve_testguests::fnv1a(&rx)
        );
        assert!(out.contains(&want), "{transport}: {out}");
    }
}
