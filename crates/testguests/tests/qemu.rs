//! Boots the PVH guests under QEMU+KVM so the guests are validated
//! independently of our VMM. Skipped (with a printed reason) when
//! qemu-system-x86_64 or /dev/kvm is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bhyve_testguests::{
    exit_status, fnv1a, qemu_available, write_guest, EXIT_BAD_CMDLINE, EXIT_PASS, EXIT_SMP_TIMEOUT,
};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bhyve-tg-qemu-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs QEMU for at most `limit`; returns (exit status or None if killed, stdout).
fn qemu(machine: &str, guest: &Path, extra: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            machine,
            "-enable-kvm",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
        ])
        .args([
            "-display", "none", "-monitor", "none", "-net", "none", "-serial", "stdio",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel"])
        .arg(guest)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status, out)
}

const MICROVM: &str = "microvm,rtc=off";
const LIMIT: Duration = Duration::from_secs(60);
const PASS: Option<i32> = Some(exit_status(EXIT_PASS));

#[test]
fn pvh_guests_under_qemu() {
    if !qemu_available() {
        return;
    }
    let d = tmpdir("pvh");
    let hello = write_guest("hello", &d).unwrap();
    let (st, out) = qemu(MICROVM, &hello, &[], LIMIT);
    assert_eq!(st, PASS, "{out}");
    assert!(out.contains("Hello from a bhyve test guest\n"), "{out}");

    let demo = write_guest("demo", &d).unwrap();
    let (st, out) = qemu(MICROVM, &demo, &[], LIMIT);
    assert_eq!(st, PASS, "{out}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("bhyve demo guest"))
        .collect();
    assert_eq!(
        lines,
        [
            "bhyve demo guest: booted",
            "bhyve demo guest: 256 MiB of RAM",
            "bhyve demo guest: powering off"
        ]
    );

    let inspect = write_guest("pvh_inspect", &d).unwrap();
    let rd: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
    let rd_path = d.join("initrd");
    std::fs::write(&rd_path, &rd).unwrap();
    let (st, out) = qemu(
        MICROVM,
        &inspect,
        &[
            "-initrd",
            rd_path.to_str().unwrap(),
            "-append",
            "cpus=1 hello=world",
        ],
        LIMIT,
    );
    assert_eq!(st, PASS, "{out}");
    assert!(
        out.contains("pvh_inspect: magic 0x336ec578 version 0x1\n"),
        "{out}"
    );
    assert!(out.contains("cmdline: cpus=1 hello=world\n"), "{out}");
    assert!(out.contains("memmap 0x100000 0xff00000 0x1\n"), "{out}");
    let module = out.lines().find(|l| l.starts_with("module ")).expect(&out);
    let f: Vec<&str> = module.split(' ').collect();
    assert_eq!(f[2], "0xbb8", "{module}");
    assert_eq!(f[4], format!("{:#x}", fnv1a(&rd)), "{module}");
    assert!(out.ends_with("pvh_inspect: done\n"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn smp_guest_under_qemu() {
    if !qemu_available() {
        return;
    }
    let d = tmpdir("smp");
    let smp = write_guest("smp", &d).unwrap();
    let (st, out) = qemu(MICROVM, &smp, &["-smp", "4", "-append", "cpus=4"], LIMIT);
    assert_eq!(st, PASS, "{out}");
    let cpus: Vec<&str> = out.lines().filter(|l| l.starts_with("cpu ")).collect();
    assert_eq!(
        cpus,
        [
            "cpu 0x0 apic 0x0",
            "cpu 0x1 apic 0x1",
            "cpu 0x2 apic 0x2",
            "cpu 0x3 apic 0x3"
        ]
    );
    assert!(out.contains("smp: 0x4 cpus online\n"), "{out}");

    let (st, out) = qemu(MICROVM, &smp, &["-smp", "2", "-append", "cpus=3"], LIMIT);
    assert_eq!(st, Some(exit_status(EXIT_SMP_TIMEOUT)), "{out}");
    assert!(
        out.contains("smp: timeout: 0x2 of 0x3 cpus checked in\n"),
        "{out}"
    );

    let (st, out) = qemu(MICROVM, &smp, &["-append", "cpus=0"], LIMIT);
    assert_eq!(st, Some(exit_status(EXIT_BAD_CMDLINE)), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn reset_fault_and_halt_guests_under_qemu() {
    if !qemu_available() {
        return;
    }
    let d = tmpdir("reset");
    // QEMU with -no-reboot exits 0 on a reset and on a triple fault.
    for name in ["reset_cf9", "reset_kbd", "triple_fault"] {
        let g = write_guest(name, &d).unwrap();
        let (st, out) = qemu("pc", &g, &[], LIMIT);
        assert_eq!(st, Some(0), "{name}: {out}");
        assert!(out.contains(&format!("{name}: ")), "{name}: {out}");
        assert!(!out.contains("still running"), "{name}: {out}");
    }
    let g = write_guest("halt", &d).unwrap();
    let (st, out) = qemu(MICROVM, &g, &[], Duration::from_secs(3));
    assert_eq!(st, None, "halt must not exit by itself: {out}");
    assert!(out.contains("halt: halting\n"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pio_loop_under_qemu() {
    if !qemu_available() {
        return;
    }
    let d = tmpdir("pio");
    let g = write_guest("pio_loop", &d).unwrap();
    // QEMU has no device at port 0xe0: the exits are handled (and
    // ignored) all the same, so the loop runs and the guest passes.
    let (st, out) = qemu(MICROVM, &g, &["-append", "x iterations=1000 y"], LIMIT);
    assert_eq!(st, PASS, "{out}");
    let (st, out) = qemu(MICROVM, &g, &[], LIMIT);
    assert_eq!(st, PASS, "{out}");
}
