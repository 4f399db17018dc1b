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
//! serves every run of a test process, unless it is lost.
//!
//! L1 also writes a heartbeat into the work folder about once a second.
//! If it stops during a job (L1 hangs: QEMU 7.2's emulated AMD-V has
//! frozen L1 whole under a loaded host), or QEMU exits, the job's L1 is
//! lost: a new L1 boots and the job runs once more (see [`Lab::run`]).

use std::io::{BufRead, BufReader, Write};
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

/// L1's `/init`: loads the modules, mounts the shares, says it is ready
/// and then runs jobs; see the module comment.
const L1_INIT: &str = include_str!("l1_init.sh");

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
    /// How long L1's heartbeat (about one a second) may stay still before
    /// L1 is declared hung. The default covers a host whose two cores run
    /// two L1s and the rest of the test suite.
    pub hang_after: Duration,
    /// Boots of L1 a lab may make, the first included: a job that loses
    /// its L1 runs once more on a new one while boots are left. 1 when
    /// losing L1 is an outcome the test judges itself.
    pub max_boots: u32,
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            cpus: 1,
            mem_mib: 2048,
            boot_timeout: Duration::from_secs(180),
            qemu: PathBuf::from("qemu-system-x86_64"),
            parallel_jobs: 1,
            hang_after: Duration::from_secs(90),
            max_boots: 3,
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

/// L1, booted again when it hangs or dies during a job (see [`Lab::run`]).
/// Dropping it powers L1 off.
pub struct Lab {
    work: PathBuf,
    spec: Spec,
    /// The L1 now running; replaced (under this lock) when it is lost.
    l1: Mutex<Arc<L1>>,
    next: AtomicU64,
    /// Free job slots (see [`LabOptions::parallel_jobs`]).
    slots: (Mutex<usize>, Condvar),
}

/// What boots an L1, kept to boot it again.
struct Spec {
    qemu: PathBuf,
    cpus: u32,
    mem_mib: u32,
    bzimage: PathBuf,
    initrd: PathBuf,
    /// The work folder as UTF-8 without spaces or commas (QEMU's syntax).
    work: String,
    boot_timeout: Duration,
    hang_after: Duration,
    max_boots: u32,
}

/// One boot of L1: one QEMU process.
struct L1 {
    /// 1 for the first boot.
    boot: u32,
    console: PathBuf,
    qemu_log: PathBuf,
    /// QEMU's human monitor, asked for the CPU state when L1 hangs.
    monitor: PathBuf,
    /// Kept open: QEMU's stdio chardev must not see EOF.
    _ctl: ChildStdin,
    dead: Arc<AtomicBool>,
    /// Shared with the supervising thread, which reaps it: killing through
    /// `Child` never signals a recycled PID.
    child: Arc<Mutex<Option<Child>>>,
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

/// Why a job did not end with a status.
enum Failure {
    /// L1 hung or died under it: the job says nothing about bhyve.
    Lost(String),
    Other(LabError),
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

        // A fresh work folder per lab (every boot of its L1 shares it);
        // absolute, since L1 mounts it at the same path in the host root.
        let work = fresh_work_dir(&dir)?;
        let initrd = work.join("l1-initramfs.cpio");
        std::fs::write(&initrd, c.finish()).map_err(io_err("writing the L1 initramfs"))?;
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
        let spec = Spec {
            qemu: opts.qemu.clone(),
            cpus: opts.cpus,
            mem_mib: opts.mem_mib,
            bzimage: kernel.bzimage.clone(),
            initrd,
            work: work_str,
            boot_timeout: opts.boot_timeout,
            hang_after: opts.hang_after,
            max_boots: opts.max_boots,
        };
        let l1 = spec.start(1)?;
        Ok(Self {
            work,
            spec,
            l1: Mutex::new(Arc::new(l1)),
            next: AtomicU64::new(1),
            slots: (Mutex::new(opts.parallel_jobs.max(1)), Condvar::new()),
        })
    }

    /// The writable folder shared with L1 (same path on both sides).
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// Runs `script` with bash in L1 (in the host root, as root, in its own
    /// job folder, `$LAB_JOB`) and waits for it. It is killed after
    /// `timeout`.
    ///
    /// If L1 itself hangs (its heartbeat stops) or dies during the job,
    /// a new L1 boots and the job runs once more, in a new folder: QEMU
    /// 7.2's emulated AMD-V has frozen L1 whole now and then under a
    /// loaded host, which says nothing about bhyve. What happened goes to
    /// stderr, uncaptured, so a passing test still shows it; a second
    /// loss, or one past [`LabOptions::max_boots`], is an error.
    pub fn run(&self, script: &str, timeout: Duration) -> Result<JobOutput> {
        let _slot = Slot::take(&self.slots);
        let l1 = self.current();
        let why = match self.run_on(&l1, script, timeout) {
            Ok(out) => return Ok(out),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::Lost(why)) => why,
        };
        if l1.boot >= self.spec.max_boots {
            return Err(LabError::L1(format!(
                "{why}\n(no more L1 boots for this lab)"
            )));
        }
        // Not eprintln!: the test harness would hide it when the retry passes.
        let _ = writeln!(
            std::io::stderr(),
            "lab: {why}\nlab: booting L1 again to run the job once more"
        );
        let l1 = self.replace(&l1)?;
        self.run_on(&l1, script, timeout).map_err(|f| match f {
            Failure::Lost(again) => LabError::L1(format!("{again}\n(L1 was lost before too)")),
            Failure::Other(e) => e,
        })
    }

    fn current(&self) -> Arc<L1> {
        self.l1.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Boots a new L1 in place of `lost`, unless another job did already.
    fn replace(&self, lost: &Arc<L1>) -> Result<Arc<L1>> {
        let mut now = self.l1.lock().unwrap_or_else(|p| p.into_inner());
        if now.boot == lost.boot {
            lost.kill();
            let _ = std::fs::remove_file(self.work.join("alive"));
            // Jobs the lost L1 never picked up are its callers' to rerun:
            // the new L1 must not start them too.
            if let Ok(jobs) = std::fs::read_dir(self.work.join("jobs")) {
                for job in jobs.flatten() {
                    let _ = std::fs::remove_file(job.path().join("go"));
                }
            }
            *now = Arc::new(self.spec.start(lost.boot + 1)?);
        }
        Ok(now.clone())
    }

    fn run_on(
        &self,
        l1: &L1,
        script: &str,
        timeout: Duration,
    ) -> std::result::Result<JobOutput, Failure> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.work.join("jobs").join(id.to_string());
        let other = Failure::Other;
        std::fs::create_dir_all(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))
            .map_err(other)?;
        let body = format!("cd \"$LAB_JOB\" || exit 120\n{script}\n");
        std::fs::write(dir.join("script"), body)
            .map_err(io_err("writing the job script"))
            .map_err(other)?;

        let secs = timeout.as_secs().max(1);
        let go = dir.join("go");
        std::fs::write(dir.join("go.tmp"), secs.to_string())
            .and_then(|_| std::fs::rename(dir.join("go.tmp"), &go))
            .map_err(io_err("starting the job"))
            .map_err(other)?;
        let start = Instant::now();
        // L1 enforces the timeout; the grace covers a slow, loaded L1.
        let deadline = start + timeout + Duration::from_secs(60);
        let mut beat = Heartbeat::new(self.work.join("alive"));
        let status = loop {
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                break s.trim().parse::<i32>().map_err(|_| {
                    Failure::Other(LabError::L1(format!("job {id}: bad status {s:?}")))
                })?;
            }
            if l1.dead.load(Ordering::SeqCst) {
                return Err(Failure::Lost(format!(
                    "L1 (boot {}) died during job {id}\n{}",
                    l1.boot,
                    l1.tails()
                )));
            }
            if beat.still_for() > self.spec.hang_after {
                // The CPU state first: killing QEMU loses it.
                let regs = l1.registers();
                return Err(Failure::Lost(format!(
                    "L1 (boot {}) hung during job {id}: no heartbeat for {} s\n{}\n--- CPU:\n{regs}",
                    l1.boot,
                    self.spec.hang_after.as_secs(),
                    l1.tails()
                )));
            }
            if Instant::now() > deadline {
                let started = !go.exists();
                return Err(Failure::Other(LabError::L1(format!(
                    "L1 did not finish job {id} (started: {started}) within its timeout plus 60 s\n{}",
                    l1.tails()
                ))));
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
        self.current().tails()
    }

    /// Which boot of L1 runs now: 1 until one was lost.
    pub fn boots(&self) -> u32 {
        self.current().boot
    }

    /// Stops L1's CPU as a hang would (QEMU's monitor `stop`), for the
    /// test of the recovery.
    pub fn freeze(&self) -> Result<()> {
        let answer = self.current().monitor("stop")?;
        if answer.matches("(qemu)").count() >= 2 {
            Ok(())
        } else {
            Err(LabError::L1(format!(
                "QEMU's monitor did not answer `stop`: {answer:?}"
            )))
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Ask L1 to power off (it checks between jobs), then make sure.
        let _ = std::fs::write(self.work.join("exit"), b"");
        let l1 = self.current();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !l1.dead.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        l1.kill();
    }
}

/// When L1's heartbeat file last changed, as seen from here (the two
/// clocks need not agree).
struct Heartbeat {
    path: PathBuf,
    last: Option<String>,
    since: Instant,
}

impl Heartbeat {
    fn new(path: PathBuf) -> Self {
        let last = std::fs::read_to_string(&path).ok();
        Self {
            path,
            last,
            since: Instant::now(),
        }
    }

    fn still_for(&mut self) -> Duration {
        let now = std::fs::read_to_string(&self.path).ok();
        if now != self.last {
            self.last = now;
            self.since = Instant::now();
        }
        self.since.elapsed()
    }
}

impl Spec {
    /// Starts QEMU for boot number `boot` and waits for L1's ready line.
    fn start(&self, boot: u32) -> Result<L1> {
        let work = Path::new(&self.work);
        let suffix = if boot == 1 {
            String::new()
        } else {
            format!("-{boot}")
        };
        let console = work.join(format!("l1-console{suffix}.log"));
        let qemu_log = work.join(format!("qemu{suffix}.log"));
        // Short and outside the work folder: a socket path has 107 bytes.
        let monitor =
            std::env::temp_dir().join(format!("bhyve-lab-{}-{boot}.mon", std::process::id()));
        let _ = std::fs::remove_file(&monitor);
        let mut cmd = Command::new(&self.qemu);
        cmd.args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot"])
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", monitor.display()))
        .arg("-smp")
        .arg(self.cpus.to_string())
        .arg("-m")
        .arg(self.mem_mib.to_string())
        .arg("-kernel")
        .arg(&self.bzimage)
        .arg("-initrd")
        .arg(&self.initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 lab.work={}", self.work))
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
            "local,path={},mount_tag=work,security_model=none,multidevs=remap",
            self.work
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
            .map_err(|e| LabError::L1(format!("starting {}: {e}", self.qemu.display())))?;
        let l1 = L1 {
            boot,
            console,
            qemu_log,
            monitor,
            _ctl: stdin,
            dead,
            child,
        };
        match ready_rx.recv_timeout(self.boot_timeout) {
            Ok(Ok(())) => Ok(l1),
            Ok(Err(why)) => Err(LabError::L1(format!("L1 failed: {why}\n{}", l1.tails()))),
            Err(_) => {
                let e = LabError::L1(format!(
                    "L1 was not ready within {:?}\n{}",
                    self.boot_timeout,
                    l1.tails()
                ));
                l1.kill();
                Err(e)
            }
        }
    }
}

impl L1 {
    fn kill(&self) {
        if let Some(c) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = c.kill();
        }
        let _ = std::fs::remove_file(&self.monitor);
    }

    fn tails(&self) -> String {
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
            tail(&self.qemu_log)
        )
    }

    /// QEMU's `info registers` for L1's CPU (or why there is none): where
    /// a hung L1 stands, e.g. in an L2 guest or in L1's kernel.
    fn registers(&self) -> String {
        match self.monitor("info registers") {
            // The FPU and vector registers say nothing about a hang.
            Ok(all) => all
                .lines()
                .filter(|l| {
                    !["FCW", "FPR", "XMM", "YMM"]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("(no registers: {e})"),
        }
    }

    /// Sends one command to QEMU's human monitor; its answer, up to the
    /// prompt after it (or a 3 s pause).
    fn monitor(&self, command: &str) -> Result<String> {
        use std::io::Read;
        let what = format!("talking to QEMU's monitor at {}", self.monitor.display());
        let mut s =
            std::os::unix::net::UnixStream::connect(&self.monitor).map_err(io_err(what.clone()))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .and_then(|_| s.write_all(format!("{command}\n").as_bytes()))
            .map_err(io_err(what))?;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // The greeting's prompt, then the answer's.
        while out.len() < 65536 && String::from_utf8_lossy(&out).matches("(qemu)").count() < 2 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
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
