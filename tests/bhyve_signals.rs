//! SIGTERM (and the other stop signals) power the VM off cleanly: exit 1
//! and the terminal bhyve put in raw mode for `-l com1,stdio` restored.
//! A guest that enabled ACPI gets SIGTERM as a power-button press instead
//! and powers itself off.

mod common;

use std::fs::File;
use std::io::BufRead;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A pseudo-terminal pair; bhyve gets the slave as stdin and stdout.
struct Pty {
    master: File,
    slave: File,
}

fn pty() -> Pty {
    // SAFETY: plain libc calls on descriptors this function owns.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(s >= 0);
        Pty {
            master: File::from_raw_fd(m),
            slave: File::from_raw_fd(s),
        }
    }
}

fn lflag(f: &File) -> libc::tcflag_t {
    // SAFETY: termios is plain data filled by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(f.as_raw_fd(), &mut t), 0);
        t.c_lflag
    }
}

fn stop_with(sig: libc::c_int) {
    let s = Scratch::new(&format!("sig{sig}"));
    let p = pty();
    let before = lflag(&p.slave);
    assert_ne!(before & libc::ICANON, 0);
    // The smp guest told to expect a CPU that never comes waits for seconds.
    let k = kernel_opt(&s.guest("smp"));
    let child = s
        .command(&[
            "-l",
            "com1,stdio",
            "-l",
            "pc-testdev",
            "-o",
            &k,
            "-o",
            "boot.cmdline=cpus=2",
            "vm0",
        ])
        .stdin(Stdio::from(p.slave.try_clone().unwrap()))
        .stdout(Stdio::from(p.slave.try_clone().unwrap()))
        .spawn()
        .unwrap();
    let mut master = p.master.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.windows(5).any(|w| w == b"cpus\r" || w == b"cpus\n") {
                break;
            }
        }
        out
    });
    let t0 = Instant::now();
    while lflag(&p.slave) & libc::ICANON != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "bhyve never made the terminal raw"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = drain.join().unwrap();
    assert!(String::from_utf8_lossy(&out).contains("smp: expecting 0x2 cpus"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let o = wait_deadline(child);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(lflag(&p.slave), before, "terminal not restored");
}

#[test]
fn sigterm_powers_off_and_restores_the_terminal() {
    stop_with(libc::SIGTERM);
}

#[test]
fn sigint_and_sighup_stop_cleanly() {
    stop_with(libc::SIGINT);
    stop_with(libc::SIGHUP);
}

/// `-D`: a VM that powers off (here through SIGTERM) is destroyed; without
/// it the named VM stays for bhyvectl and bhyveload.
#[test]
fn destroy_on_poweroff() {
    for (flag, kept) in [(Some("-D"), false), (None, true)] {
        let s = Scratch::new(&format!("destroy{kept}"));
        let k = kernel_opt(&s.guest("smp"));
        let mut args = vec!["-o", &k, "-o", "boot.cmdline=cpus=2"];
        args.extend(flag);
        args.push("vm0");
        let child = s.command(&args).spawn().unwrap();
        let sock = s.rundir().join("vm0").join("ctl.sock");
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let o = wait_deadline(child);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(s.rundir().join("vm0").exists(), kept, "{flag:?}");
    }
}

/// Reads lines from the guest until one equals `want`; returns them all.
fn read_until(r: &mut impl BufRead, want: &str, seen: &mut String) {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("guest output ended before {want:?}: {seen}");
        }
        seen.push_str(&line);
        if line.trim_end() == want {
            return;
        }
    }
}

/// Once the guest enabled ACPI, SIGTERM presses the power button: the
/// guest sees the SCI and PWRBTN_STS, a second SIGTERM presses again, and
/// the guest powers off through S5 (exit 1) on its own.
#[test]
fn sigterm_presses_the_acpi_power_button() {
    let s = Scratch::new("pwrbtn");
    let k = kernel_opt(&s.guest("acpi_button"));
    let mut child = s
        .command(&["-l", "com1,stdio", "-l", "pc-testdev", "-o", &k, "vm0"])
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let pid = child.id() as libc::pid_t;
    let mut seen = String::new();
    read_until(&mut out, "acpi_button: ready", &mut seen);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    read_until(&mut out, "acpi_button: sci, pressed", &mut seen);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    read_until(&mut out, "acpi_button: pressed again", &mut seen);
    let o = wait_deadline(child);
    assert_eq!(o.status.code(), Some(1), "{seen}{}", stderr(&o));
}
