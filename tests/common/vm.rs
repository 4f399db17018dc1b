//! Running a test guest under our bhyve or under QEMU (the yardstick)
//! while the test talks to it, and picking its output lines.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use super::{kernel_opt, stderr, stdout, wait_deadline, Scratch};

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

/// bhyve's arguments for test guest `guest` in VM `vm`: `mem` of RAM,
/// COM1 on stdio, pc-testdev, a hostbridge in slot 0 and `slots`.
pub fn guest_args(
    guest: &Path,
    mem: &str,
    slots: &[&str],
    cmdline: Option<&str>,
    vm: &str,
) -> Vec<String> {
    let mut a: Vec<String> = ["-m", mem, "-l", "com1,stdio", "-l", "pc-testdev"]
        .map(str::to_owned)
        .to_vec();
    for slot in ["0,hostbridge"].iter().chain(slots) {
        a.extend(["-s".to_owned(), slot.to_string()]);
    }
    a.extend(["-o".to_owned(), kernel_opt(guest)]);
    if let Some(c) = cmdline {
        a.extend(["-o".to_owned(), format!("boot.cmdline={c}")]);
    }
    a.push(vm.to_owned());
    a
}

pub fn bhyve_args(guest: &Path, slot: &str, cmdline: &str) -> Vec<String> {
    guest_args(guest, "128M", &[slot], Some(cmdline), "vm")
}

impl Scratch {
    /// bhyve running test guest `name` in VM `vm0` with 256 MiB (see
    /// [`guest_args`]).
    pub fn guest_command(&self, name: &str, slots: &[&str], cmdline: Option<&str>) -> Command {
        let args = guest_args(&self.guest(name), "256M", slots, cmdline, "vm0");
        self.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// [`Scratch::guest_command`] run to completion (killed after
    /// [`super::DEADLINE`]).
    pub fn run_guest(&self, name: &str, slots: &[&str], cmdline: Option<&str>) -> Output {
        wait_deadline(self.guest_command(name, slots, cmdline).spawn().unwrap())
    }
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

// Not every test that shares this module runs QEMU.
#[allow(unused_imports)]
pub use bhyve_testguests::qemu_available;

/// Runs `guest` under QEMU ([`qemu_args`]) with `extra` arguments to
/// completion; (exit status, serial output and QEMU's stderr).
pub fn run_qemu(guest: &Path, cmdline: &str, extra: &[&str]) -> (Option<i32>, String) {
    let child = Command::new("qemu-system-x86_64")
        .args(qemu_args(guest, cmdline))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_deadline(child);
    (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
}

/// The guest's own lines (`NAME: …`), without firmware noise: unlike
/// [`guest_lines`], a line must start with the guest's name.
pub fn own_lines<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    out.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The guest's lines (`NAME: …\n`), cut free of firmware text that may
/// precede them on the same line.
pub fn guest_lines(out: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    out.lines()
        .filter_map(|l| l.find(&prefix).map(|i| format!("{}\n", &l[i..])))
        .collect()
}
