//! Running a test guest under our bhyve or under QEMU (the yardstick)
//! while the test talks to it, and picking its output lines.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::kernel_opt;

/// A bhyve child whose stdout is collected as it comes; killed on drop.
pub struct Running {
    pub child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let b = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Running { child, out, err }
    }

    pub fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub fn report(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Who runs the guest: our bhyve, or QEMU as the yardstick that shows
/// the guest itself is right (its devices are independent
/// implementations of the same hardware).
#[derive(Clone, Copy)]
pub enum Vmm {
    Bhyve,
    Qemu,
}

pub fn bhyve_args(guest: &Path, slot: &str, cmdline: &str) -> Vec<String> {
    [
        "-m",
        "128M",
        "-l",
        "com1,stdio",
        "-l",
        "pc-testdev",
        "-s",
        "0,hostbridge",
        "-s",
        slot,
        "-o",
        &kernel_opt(guest),
        "-o",
        &format!("boot.cmdline={cmdline}"),
        "vm",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// QEMU q35 (SeaBIOS assigns the BARs), the guest as a PVH kernel.
pub fn qemu_args(guest: &Path, cmdline: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "-M",
        "q35",
        "-enable-kvm",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-display",
        "none",
        "-monitor",
        "none",
        "-net",
        "none",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-append",
        cmdline,
        "-kernel",
    ]
    .map(str::to_owned)
    .to_vec();
    a.push(guest.display().to_string());
    a
}

/// QEMU + KVM present (the QEMU cross-checks are skipped otherwise).
pub fn qemu_available() -> bool {
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

/// The guest's lines (`NAME: …\n`), cut free of firmware text that may
/// precede them on the same line.
pub fn guest_lines(out: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    out.lines()
        .filter_map(|l| l.find(&prefix).map(|i| format!("{}\n", &l[i..])))
        .collect()
}
