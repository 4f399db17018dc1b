//! The C test guests (payload at CPL3) under bhyve: the runtime itself
//! (`c_runtime`), then the virtio-blk and virtio-console data paths in
//! both transports, checked from the host side (the disk file, the port's
//! socket). The guests are validated under QEMU too when it is present.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use bhyve_testguests::{exit_status, EXIT_FAIL, PASS_STATUS};
use common::*;

/// QEMU + KVM present (the QEMU cross-checks are skipped otherwise).
fn qemu_available() -> bool {
    let ok = Path::new("/dev/kvm").exists()
        && Command::new("qemu-system-x86_64")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: qemu-system-x86_64 or /dev/kvm not available");
    }
    ok
}

/// Runs `guest` under QEMU q35 (SeaBIOS assigns the BARs) with `extra`
/// arguments; (exit status, serial output).
fn qemu(guest: &Path, cmdline: &str, extra: &[&str]) -> (Option<i32>, String) {
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-enable-kvm", "-m", "256", "-nographic"])
        .args(["-no-reboot", "-display", "none", "-monitor", "none"])
        .args(["-net", "none", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel"])
        .arg(guest)
        .args(["-append", cmdline])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_deadline(child);
    (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// The guest's own lines (`NAME: …`), without firmware noise.
fn lines<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    out.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn c_runtime_under_bhyve() {
    let s = Scratch::new("c-runtime");
    let kernel = kernel_opt(&s.guest("c_runtime"));
    let o = s.run(&[
        "-l",
        "com1,stdio",
        "-l",
        "pc-testdev",
        "-s",
        "0,hostbridge",
        "-s",
        "3,virtio-rnd",
        "-m",
        "256M",
        "-o",
        &kernel,
        "-o",
        "boot.cmdline=a=b echo=word num=0x2a",
        "vm0",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(PASS_STATUS), "{out}{}", stderr(&o));
    assert_eq!(
        lines(&out, "c_runtime"),
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

#[test]
fn c_runtime_needs_64_mib() {
    // The heap (48 MiB from 16 MiB) does not fit: one line, status 35.
    let s = Scratch::new("c-runtime-small");
    let kernel = kernel_opt(&s.guest("c_runtime"));
    let o = s.run(&[
        "-l",
        "com1,stdio",
        "-l",
        "pc-testdev",
        "-m",
        "32M",
        "-o",
        &kernel,
        "vm0",
    ]);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_FAIL)),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&o),
        "tg: less than 48 MiB of RAM from 16 MiB\n",
        "{}",
        stderr(&o)
    );
}

#[test]
fn c_runtime_under_qemu() {
    if !qemu_available() {
        return;
    }
    let s = Scratch::new("c-runtime-qemu");
    let (st, out) = qemu(&s.guest("c_runtime"), "num=5", &[]);
    assert_eq!(st, Some(PASS_STATUS), "{out}");
    let l = lines(&out, "c_runtime");
    assert!(l.contains(&"c_runtime: no echo"), "{out}");
    assert!(l.contains(&"c_runtime: num 5"), "{out}");
    assert!(l.contains(&"c_runtime: pci 0 8086:29c0"), "{out}");
    assert_eq!(l.last(), Some(&"c_runtime: done"), "{out}");
}
