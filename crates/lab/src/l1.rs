//! The L1 machine: Debian's generic kernel under QEMU's software CPU with
//! emulated AMD-V (`-accel tcg -cpu max`), `kvm_amd` loaded, the host root
//! shared read-only and a work folder shared writable at the same path, so
//! a script run in L1 sees the host's files (our freshly built binaries,
//! QEMU, socat, python) unchanged and leaves its results where the host
//! can read them.
//!
//! Jobs go through the shared work folder: the harness writes
//! `jobs/ID/script` and then `jobs/ID/go` (the timeout in seconds); L1
//! polls for `go` files, runs the script under `timeout` in the host root
//! and writes `jobs/ID/status` when it ends. (A command channel over L1's
//! second serial port lost a command now and then under TCG; files on 9p
//! do not.) L1's second serial port (QEMU's stdio) only says when L1 is
//! ready or why it failed, and its end tells that L1 died. One L1 boot
//! serves every run of a test process.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::cpio::Cpio;
use crate::kmod::ModuleTree;
use crate::{debs, io_err, lab_dir, LabError, Result};

/// Modules L1 inserts (with their dependencies): KVM on emulated AMD-V,
/// the 9p shares, and what lab tests need on the L1 side: tap devices for
/// the network tests, uinput and evdev for a real input device to pass
/// to virtio-input.
const L1_MODULES: &[&str] = &[
    "kvm-amd",
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "tun",
    "uinput",
    "evdev",
];

const L1_INIT: &str = r#"#!/bin/sh
# The lab's L1 init (see crates/lab/src/l1.rs).
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo
fail() { echo "LAB-L1-FAIL $*" >&3; echo "LAB-L1-FAIL $*"; poweroff -f; }
work=
for w in $(cat /proc/cmdline); do
    case "$w" in lab.work=*) work="${w#lab.work=}" ;; esac
done
[ -n "$work" ] || fail "no lab.work= on the kernel command line"
for m in $(cat /modules.order); do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm_amd (does the CPU model offer svm?)"
opts=trans=virtio,version=9p2000.L,msize=512000,cache=none
mkdir -p /host
mount -t 9p -o ro,$opts hostroot /host || fail "mounting the host root"
mount --bind /proc /host/proc
mount --bind /sys /host/sys
mount --bind /dev /host/dev
mkdir -p /host/dev/shm
mount -t tmpfs tmpfs /host/dev/shm
# Scratch space on /run (each job gets its own directory there, see
# below). The host's /tmp stays visible, read-only: the workspace may
# live there.
mount -t tmpfs tmpfs /host/run
mkdir -p /host/run/tmp
chmod 1777 /host/run/tmp
# Last, so no scratch mount can hide it.
mount -t 9p -o $opts work "/host$work" || fail "mounting the work folder at $work"
echo "LAB-L1-READY" >&3
jobs="/host$work/jobs"
while :; do
    for go in "$jobs"/*/go; do
        [ -f "$go" ] || continue
        d="${go%/go}"
        j="${d#/host}"
        secs=$(cat "$go")
        rm -f "$go"
        echo "lab-l1: job ${d##*/} (${secs} s)" >/dev/console
        (
            exec 3>&-
            # Each job's scratch (TMPDIR, bhyve's run dir with the guests'
            # memory files) goes with it: a guest killed with SIGKILL
            # leaves its memory file, and /run is a tmpfs shared by every
            # job of this L1.
            scratch=/run/job-${d##*/}
            mkdir -p "/host$scratch/tmp"
            chmod 1777 "/host$scratch/tmp"
            chroot /host /usr/bin/env -i \
                PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
                HOME=/root TERM=dumb TMPDIR="$scratch/tmp" \
                BHYVE_RUNDIR="$scratch/bhyve" LAB_JOB="$j" LAB_WORK="$work" \
                /usr/bin/timeout -s KILL "$secs" /bin/bash "$j/script" \
                >"$d/out" 2>&1 </dev/null
            echo $? >"$d/status.tmp"
            rm -rf "/host$scratch"
            mv "$d/status.tmp" "$d/status"
        ) &
    done
    [ -f "/host$work/exit" ] && poweroff -f
    usleep 200000
done
"#;

/// How to boot L1.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// L1's vCPUs. Default 1: with two, QEMU 7.2's emulated AMD-V has
    /// crashed L1 (a host interrupt taken between VMRUN's exit and KVM's
    /// VMLOAD, with the guest's GS base) every few runs. L2 guests with
    /// `-c 2` still get two vCPU threads, time-shared.
    pub cpus: u32,
    pub mem_mib: u32,
    /// From QEMU start to L1's ready line.
    pub boot_timeout: Duration,
    pub qemu: PathBuf,
    /// Jobs L1 runs at once; others wait their turn. Default 1: with two
    /// L2 guests at once, QEMU's emulated AMD-V (7.2) has corrupted guest
    /// and even L1 state now and then (L2 triple faults, an L1 oops in
    /// KVM_RUN), which would make the lab's verdicts flaky.
    pub parallel_jobs: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            cpus: 1,
            mem_mib: 2048,
            boot_timeout: Duration::from_secs(180),
            qemu: PathBuf::from("qemu-system-x86_64"),
            parallel_jobs: 1,
        }
    }
}

/// What a script run in L1 produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// The script's exit status (137 when its timeout killed it).
    pub status: i32,
    pub timed_out: bool,
    /// Its standard output and error, interleaved.
    pub output: String,
    /// Its job folder (same path on the host and in L1).
    pub dir: PathBuf,
    /// From handing the job to L1 until its status arrived (not counting
    /// the wait for a job slot).
    pub elapsed: Duration,
}

/// A running L1. Dropping it powers L1 off.
pub struct Lab {
    work: PathBuf,
    console: PathBuf,
    /// Kept open: QEMU's stdio chardev must not see EOF.
    _ctl: ChildStdin,
    dead: Arc<AtomicBool>,
    /// Shared with the supervising thread, which reaps it: killing through
    /// `Child` never signals a recycled PID.
    child: Arc<Mutex<Option<Child>>>,
    next: AtomicU64,
    /// Free job slots (see [`LabOptions::parallel_jobs`]).
    slots: (Mutex<usize>, Condvar),
}

/// A job slot, given back on drop.
struct Slot<'a>(&'a (Mutex<usize>, Condvar));

impl<'a> Slot<'a> {
    fn take(slots: &'a (Mutex<usize>, Condvar)) -> Self {
        let (m, cv) = slots;
        let mut free = m.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(slots)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let (m, cv) = self.0;
        *m.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        cv.notify_one();
    }
}

impl Lab {
    /// Fetches what L1 needs, boots it and waits until it accepts jobs.
    pub fn boot(opts: &LabOptions) -> Result<Self> {
        check_qemu(&opts.qemu)?;
        let dir = lab_dir();
        let cache = dir.join("cache");
        let kernel = debs::kernel(&cache, "linux-image-amd64")?;
        let busybox = debs::busybox(&cache)?;
        let tree = ModuleTree::scan(&kernel.modules)?;

        let mut c = Cpio::new();
        c.host_file("bin/busybox", 0o755, &busybox)?;
        c.symlink("bin/sh", "busybox");
        for d in ["proc", "sys", "dev", "host"] {
            c.dir(d);
        }
        c.chardev("dev/console", 5, 1);
        c.file("init", 0o755, L1_INIT.as_bytes());
        let mut order = String::new();
        for (name, path) in tree.load_order(L1_MODULES)? {
            c.host_file(&format!("lib/modules/{name}.ko"), 0o644, &path)?;
            order.push_str(&name);
            order.push('\n');
        }
        c.file("modules.order", 0o644, order.as_bytes());

        // A fresh work folder per L1; absolute, since L1 mounts it at the
        // same path inside the host root.
        let work = fresh_work_dir(&dir)?;
        let initrd = work.join("l1-initramfs.cpio");
        std::fs::write(&initrd, c.finish()).map_err(io_err("writing the L1 initramfs"))?;
        let console = work.join("l1-console.log");
        let qemu_log = work.join("qemu.log");
        let work_str = work
            .to_str()
            .filter(|s| !s.contains([' ', ',']))
            .ok_or_else(|| {
                LabError::Format(format!(
                    "the lab folder {} must be UTF-8 without spaces or commas (set BHYVE_LAB_DIR)",
                    work.display()
                ))
            })?
            .to_string();

        let mut cmd = Command::new(&opts.qemu);
        cmd.args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-smp")
        .arg(opts.cpus.to_string())
        .arg("-m")
        .arg(opts.mem_mib.to_string())
        .arg("-kernel")
        .arg(&kernel.bzimage)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 lab.work={work_str}"))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-chardev",
            "stdio,id=ctl,signal=off",
            "-serial",
            "chardev:ctl",
        ])
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
        .arg("-virtfs")
        .arg(format!(
            "local,path={work_str},mount_tag=work,security_model=none,multidevs=remap"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(&qemu_log)
                .map_err(io_err(format!("creating {}", qemu_log.display())))?,
        );
        // SAFETY: prctl only, which is async-signal-safe. L1 must not
        // outlive the process that booted it (test binaries never drop
        // their shared lab); the spawning thread below lives as long as L1.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }

        let (spawned_tx, spawned_rx) = channel();
        let dead = Arc::new(AtomicBool::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::default();
        let (ready_tx, ready_rx) = channel::<std::result::Result<(), String>>();
        {
            let dead = dead.clone();
            let child = child.clone();
            std::thread::Builder::new()
                .name("lab-l1".into())
                .spawn(move || supervise(cmd, child, spawned_tx, ready_tx, dead))
                .map_err(io_err("starting the L1 thread"))?;
        }
        let stdin = spawned_rx
            .recv()
            .map_err(|_| LabError::L1("the L1 thread ended early".into()))?
            .map_err(|e| LabError::L1(format!("starting {}: {e}", opts.qemu.display())))?;
        let lab = Self {
            work,
            console,
            _ctl: stdin,
            dead,
            child,
            next: AtomicU64::new(1),
            slots: (Mutex::new(opts.parallel_jobs.max(1)), Condvar::new()),
        };
        match ready_rx.recv_timeout(opts.boot_timeout) {
            Ok(Ok(())) => Ok(lab),
            Ok(Err(why)) => Err(LabError::L1(format!("L1 failed: {why}\n{}", lab.tails()))),
            Err(_) => Err(LabError::L1(format!(
                "L1 was not ready within {:?}\n{}",
                opts.boot_timeout,
                lab.tails()
            ))),
        }
    }

    /// The writable folder shared with L1 (same path on both sides).
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// Runs `script` with bash in L1 (in the host root, as root, in its own
    /// job folder, `$LAB_JOB`) and waits for it. It is killed after
    /// `timeout`; if L1 itself stops answering, the lab is declared dead.
    pub fn run(&self, script: &str, timeout: Duration) -> Result<JobOutput> {
        let _slot = Slot::take(&self.slots);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join("jobs").join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let body = format!("cd \"$LAB_JOB\" || exit 120\n{script}\n");
        std::fs::write(dir.join("script"), body).map_err(io_err("writing the job script"))?;

        let secs = timeout.as_secs().max(1);
        let go = dir.join("go");
        std::fs::write(dir.join("go.tmp"), secs.to_string())
            .and_then(|_| std::fs::rename(dir.join("go.tmp"), &go))
            .map_err(io_err("starting the job"))?;
        let start = Instant::now();
        // L1 enforces the timeout; the grace covers a slow, loaded L1.
        let deadline = start + timeout + Duration::from_secs(60);
        let status = loop {
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                break s
                    .trim()
                    .parse::<i32>()
                    .map_err(|_| LabError::L1(format!("job {id}: bad status {s:?}")))?;
            }
            if self.dead.load(Ordering::SeqCst) {
                return Err(LabError::L1(format!(
                    "L1 died during job {id}\n{}",
                    self.tails()
                )));
            }
            if Instant::now() > deadline {
                let started = !go.exists();
                return Err(LabError::L1(format!(
                    "L1 did not finish job {id} (started: {started}) within its timeout plus 60 s\n{}",
                    self.tails()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = std::fs::read(dir.join("out"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(JobOutput {
            status,
            timed_out: status == 137 && start.elapsed() >= timeout,
            elapsed: start.elapsed(),
            output,
            dir,
        })
    }

    /// The last lines of L1's console and of QEMU's own messages.
    pub fn tails(&self) -> String {
        let tail = |p: &Path| {
            let s = std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(25)..].join("\n")
        };
        format!(
            "--- L1 console ({}):\n{}\n--- QEMU:\n{}",
            self.console.display(),
            tail(&self.console),
            tail(&self.work.join("qemu.log"))
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Ask L1 to power off (it checks between jobs), then make sure.
        let _ = std::fs::write(self.work.join("exit"), b"");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.dead.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(c) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = c.kill();
        }
    }
}

type Spawned = std::result::Result<ChildStdin, std::io::Error>;

/// Owns the QEMU process for its whole life (so PDEATHSIG fires only when
/// the test process exits) and routes its control-port lines.
fn supervise(
    mut cmd: Command,
    shared: Arc<Mutex<Option<Child>>>,
    spawned: Sender<Spawned>,
    ready: Sender<std::result::Result<(), String>>,
    dead: Arc<AtomicBool>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = spawned.send(Err(e));
            return;
        }
    };
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    *shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    let _ = spawned.send(Ok(stdin));
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "LAB-L1-READY" {
            let _ = ready.send(Ok(()));
        } else if let Some(why) = line.strip_prefix("LAB-L1-FAIL ") {
            let _ = ready.send(Err(why.to_string()));
        }
    }
    // QEMU closed its stdout: it is exiting. Reap it without holding the
    // lock across a blocking wait, so Drop can still kill.
    loop {
        let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => {}
            _ => break,
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(50));
    }
    dead.store(true, Ordering::SeqCst);
    let _ = ready.send(Err("QEMU exited".into()));
}

fn check_qemu(qemu: &Path) -> Result<()> {
    match Command::new(qemu).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(LabError::Missing(format!(
            "{} not found: install Debian's qemu-system-x86 (the lab's L1 runs under QEMU's TCG)",
            qemu.display()
        ))),
    }
}

fn fresh_work_dir(lab: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(lab).map_err(io_err(format!("creating {}", lab.display())))?;
    let lab = lab
        .canonicalize()
        .map_err(io_err(format!("resolving {}", lab.display())))?;
    // Test processes never drop their shared lab: clear the folders of
    // runs whose process is gone.
    if let Ok(rd) = std::fs::read_dir(&lab) {
        for e in rd.flatten() {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("work-"));
            if let Some(pid) = pid.filter(|p| p.parse::<u32>().is_ok()) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let work = lab.join(format!("work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("jobs"))
        .map_err(io_err(format!("creating {}", work.display())))?;
    Ok(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qemu_is_named_with_its_package() {
        let opts = LabOptions {
            qemu: PathBuf::from("/nonexistent/qemu-system-x86_64"),
            ..LabOptions::default()
        };
        let e = Lab::boot(&opts)
            .map(|_| ())
            .expect_err("no QEMU, no lab")
            .to_string();
        assert!(e.contains("qemu-system-x86"), "{e}");
    }
}
