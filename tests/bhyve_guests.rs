//! bhyve runs the test guests: serial output, every exit status from a
//! real guest action, SMP bring-up, and what the loaders hand a kernel.

mod common;

use bhyve_testguests::{exit_status, fnv1a, EXIT_PASS};
use common::*;

/// Boots guest `name` with COM1 on stdout and pc-testdev.
fn boot(s: &Scratch, name: &str, extra: &[&str]) -> std::process::Output {
    let k = kernel_opt(&s.guest(name));
    let mut args = vec!["-l", "com1,stdio", "-l", "pc-testdev", "-o", &k];
    args.extend_from_slice(extra);
    args.push("vm0");
    s.run(&args)
}

#[test]
fn hello_on_com1_stdio() {
    let s = Scratch::new("hello");
    let o = boot(&s, "hello", &[]);
    assert_eq!(
        stdout(&o),
        "Hello from a bhyve test guest\n",
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(exit_status(EXIT_PASS)));
}

#[test]
fn exit_statuses_from_guest_actions() {
    let s = Scratch::new("status");
    for (guest, status, line) in [
        ("reset_cf9", 0, "reset_cf9: resetting\n"),
        ("reset_kbd", 0, "reset_kbd: resetting\n"),
        ("triple_fault", 3, "triple_fault: faulting\n"),
        ("halt", 2, "halt: halting\n"),
    ] {
        let o = boot(&s, guest, &[]);
        assert_eq!(o.status.code(), Some(status), "{guest}: {}", stderr(&o));
        assert_eq!(stdout(&o), line, "{guest}");
    }
}

#[test]
fn power_off_via_pc_testdev_and_demo_memory() {
    let s = Scratch::new("demo");
    let o = boot(&s, "demo", &["-m", "512M"]);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("bhyve demo guest: 512 MiB of RAM\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn smp_four_cpus_report_apic_ids() {
    let s = Scratch::new("smp");
    let o = boot(&s, "smp", &["-c", "4", "-o", "boot.cmdline=cpus=4"]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{out}{}",
        stderr(&o)
    );
    for i in 0..4 {
        assert!(out.contains(&format!("cpu {i:#x} apic {i:#x}\n")), "{out}");
    }
    assert!(out.contains("smp: 0x4 cpus online\n"));
}

#[test]
fn pvh_and_bzimage_see_cmdline_initrd_and_e820() {
    let s = Scratch::new("inspect");
    let initrd: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    let ipath = s.file("initrd.img", &initrd);
    let iopt = format!("boot.initrd={}", ipath.display());
    let hash = format!("{:#x} fnv1a {:#x}\n", initrd.len(), fnv1a(&initrd));
    let cmd = "boot.cmdline=console=ttyS0 root=/dev/vda quiet";
    // 256 MiB: one RAM entry below 640K, the reserved BIOS hole, the rest.
    let ram = [
        "0x0 0xa0000 0x1",
        "0xa0000 0x60000 0x2",
        "0x100000 0xff00000 0x1",
    ];

    let o = boot(&s, "pvh_inspect", &["-o", &iopt, "-o", cmd]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{out}{}",
        stderr(&o)
    );
    assert!(
        out.contains("cmdline: console=ttyS0 root=/dev/vda quiet\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("module ") && l.ends_with(hash.trim_end())),
        "{out}"
    );
    for r in ram {
        assert!(out.contains(&format!("memmap {r}\n")), "{out}");
    }

    let o = boot(&s, "bzimage_inspect", &["-o", &iopt, "-o", cmd]);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{out}{}",
        stderr(&o)
    );
    assert!(
        out.contains("cmdline: console=ttyS0 root=/dev/vda quiet\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ramdisk ") && l.ends_with(hash.trim_end())),
        "{out}"
    );
    for r in ram {
        assert!(out.contains(&format!("e820 {r}\n")), "{out}");
    }
}

#[test]
fn echo_over_tcp() {
    use std::io::{Read, Write};
    let s = Scratch::new("tcp");
    // Pick a free port, then give it to bhyve.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // serial_echo prints nothing until it receives a byte: bhyve (like
    // FreeBSD's) drops console output while no client is connected.
    let k = kernel_opt(&s.guest("serial_echo"));
    let com = format!("com1,tcp=127.0.0.1:{port}");
    let child = s
        .command(&["-l", &com, "-l", "pc-testdev", "-o", &k, "vm0"])
        .spawn()
        .unwrap();
    let mut conn = None;
    for _ in 0..500 {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    let mut conn = conn.expect("bhyve never listened");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"Z").unwrap();
    let mut got = Vec::new();
    let want = b"echo: Z\n";
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let o = wait_deadline(child);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "{}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(exit_status(EXIT_PASS)));
}

#[test]
fn pinning_and_vm_wide_options_run() {
    let s = Scratch::new("opts");
    // -p pins each vCPU thread; the SMP guest still brings both up.
    let o = boot(
        &s,
        "smp",
        &[
            "-c",
            "2",
            "-p",
            "0:0",
            "-p",
            "1:0",
            "-o",
            "boot.cmdline=cpus=2",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // -H -P -S -C -w -x each change how the VM is set up, not what a
    // simple guest sees.
    let o = boot(&s, "hello", &["-H", "-P", "-S", "-C", "-w", "-x"]);
    assert_eq!(
        o.status.code(),
        Some(exit_status(EXIT_PASS)),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "Hello from a bhyve test guest\n");
}

/// The vCPU thread is named "vcpu 0" and `-p 0:1` confines it to host CPU 1.
#[test]
fn vcpu_thread_name_and_affinity() {
    let s = Scratch::new("affinity");
    let k = kernel_opt(&s.guest("smp"));
    // Expecting a second CPU that never comes keeps the guest busy.
    let child = s
        .command(&[
            "-p",
            "0:1",
            "-l",
            "pc-testdev",
            "-o",
            &k,
            "-o",
            "boot.cmdline=cpus=2",
            "vm0",
        ])
        .spawn()
        .unwrap();
    let task_dir = format!("/proc/{}/task", child.id());
    let t0 = std::time::Instant::now();
    // The thread is named as it starts and pins itself a moment later, so
    // keep reading until the pin shows (or the deadline passes).
    let mut found = None;
    while found.as_deref() != Some("1") && t0.elapsed() < std::time::Duration::from_secs(10) {
        for t in std::fs::read_dir(&task_dir).into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "vcpu 0" {
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                found = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|v| v.trim().to_string());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let o = wait_deadline(child);
    assert_eq!(found.as_deref(), Some("1"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(1));
}
