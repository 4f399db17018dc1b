//! Bad input and unsupported options: one line on stderr, bhyve's status,
//! never a panic.

mod common;

use common::*;

/// Runs bhyve and checks its status and its single stderr line.
fn fails(s: &Scratch, args: &[&str], status: i32, line: &str) {
    let o = s.run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(status), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("bhyve: ") && err.contains(line),
        "{args:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_memory_size() {
    let s = Scratch::new("badmem");
    fails(&s, &["-m", "lots", "vm0"], 64, "invalid memsize 'lots'");
}

#[test]
fn missing_and_bogus_kernels() {
    let s = Scratch::new("badkernel");
    fails(
        &s,
        &["-o", "boot.kernel=/nonexistent/vmlinuz", "vm0"],
        4,
        "kernel /nonexistent/vmlinuz: No such file",
    );
    let junk = s.file("junk", &[0x5a; 8192]);
    let k = kernel_opt(&junk);
    fails(&s, &["-o", &k, "vm0"], 4, "not a Linux kernel");
    // A failed load of a new VM leaves nothing behind.
    assert_eq!(std::fs::read_dir(s.rundir()).unwrap().count(), 0);
}

#[test]
fn nothing_to_boot() {
    let s = Scratch::new("noboot");
    fails(&s, &["vm0"], 4, "virtual machine cannot be booted");
    fails(
        &s,
        &["-l", "bootrom,/usr/share/bhyve/BHYVE_UEFI.fd", "vm0"],
        4,
        "Error opening bootrom \"/usr/share/bhyve/BHYVE_UEFI.fd\"",
    );
}

#[test]
fn unimplemented_devices_and_options() {
    let s = Scratch::new("unimpl");
    let k = kernel_opt(&s.guest("hello"));
    fails(
        &s,
        &["-s", "3,xhci,tablet", "-o", &k, "vm0"],
        4,
        "pci 0:3:0: emulation 'xhci' is not implemented yet",
    );
    // A block device's backing path must be a file or a block device.
    fails(
        &s,
        &["-s", "3,virtio-blk,/dev/null", "-o", &k, "vm0"],
        4,
        "/dev/null: not a regular file or block device",
    );
    fails(
        &s,
        &["-G", "1234", "-o", &k, "vm0"],
        4,
        "-G: the gdb stub is not implemented yet",
    );
    fails(
        &s,
        &["-l", "com1,/nonexistent/tty", "-o", &k, "vm0"],
        4,
        "Unable to initialize backend '/nonexistent/tty' for LPC device com1",
    );

    // Accepted-but-not-effective options warn once each and still run.
    let o = s.run(&[
        "-A",
        "-s",
        "0,hostbridge",
        "-s",
        "31,lpc",
        "-l",
        "pc-testdev",
        "-o",
        &k,
        "vm0",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(33), "{err}");
    // -A is effective now (ACPI tables): no warning, the guest still runs.
    assert!(!err.contains("-A"), "{err}");
    // hostbridge and lpc are real PCI functions now: no warning.
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn strict_io_stops_on_an_unemulated_port() {
    let s = Scratch::new("strictio");
    let k = kernel_opt(&s.guest("hello"));
    // Without pc-testdev the guest's final write to port 0xf4 is unclaimed.
    fails(
        &s,
        &["-e", "-l", "com1,stdio", "-o", &k, "vm0"],
        4,
        "Unhandled outl 0x00f4 at 0x",
    );
    // Without -e the write is ignored and the guest goes on (to a halt).
    let o = s.run(&["-l", "com1,stdio", "-o", &k, "vm0"]);
    assert_eq!(stdout(&o), "Hello from a bhyve test guest\n");
    assert_ne!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn help_lists_mark_missing_emulations() {
    let s = Scratch::new("help");
    let o = s.run(&["-s", "help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.lines().any(|l| l == "hostbridge"), "{out}");
    assert!(
        out.lines().any(|l| l == "virtio-blk (not implemented yet)"),
        "{out}"
    );
    let o = s.run(&["-l", "help"]);
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l == "com1")
            && out.lines().any(|l| l == "bootrom")
            && out.lines().any(|l| l == "tpm (not implemented yet)"),
        "{out}"
    );
}

#[test]
fn non_utf8_arguments_are_one_line_errors() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"/tmp/\xffkernel");
    for (bin, name) in [
        (env!("CARGO_BIN_EXE_bhyve"), "bhyve"),
        (env!("CARGO_BIN_EXE_bhyveload"), "bhyveload"),
    ] {
        let o = std::process::Command::new(bin)
            .arg("-k")
            .arg(bad)
            .arg("vm0")
            .env("BHYVE_RUNDIR", std::env::temp_dir().join("bhyve-nonutf8"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with(&format!("{name}: argument is not valid UTF-8")),
            "{err}"
        );
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bhyvectl"))
        .arg(std::ffi::OsStr::from_bytes(b"--vm=\xff"))
        .arg("--destroy")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("bhyvectl: argument is not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn snapshot_restore_and_inert_options() {
    let s = Scratch::new("inert");
    let k = kernel_opt(&s.guest("hello"));
    fails(
        &s,
        &["-r", "/tmp/snap", "-o", &k, "vm0"],
        4,
        "-r: restoring a snapshot is not implemented yet",
    );
    // Each accepted-but-inert option says so on one line and the VM runs.
    let o = s.run(&[
        "-Y",
        "-u",
        "-U",
        "00000000-0000-0000-0000-000000000001",
        "-K",
        "us",
        "-l",
        "pc-testdev",
        "-o",
        &k,
        "vm0",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(33), "{err}");
    // -Y (no MP table), -u (RTC in UTC) and -U (SMBIOS) are effective and
    // say nothing.
    assert!(
        !err.contains("-Y") && !err.contains("-u") && !err.contains("-U"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("bhyve: warning: -K: "))
            .count(),
        1,
        "{err}"
    );
}
