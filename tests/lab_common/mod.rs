//! What the real-OS lab test files share (tests/lab_linux.rs,
//! tests/lab_virtio.rs, tests/lab_hw.rs): one L1 per test process, the L2
//! images, running a job that boots L2 on our bhyve, and reading what
//! the guest and the job reported.

#![allow(dead_code)]

pub mod disk;

use std::sync::OnceLock;
use std::time::Duration;

use bhyve_lab::guest::cmdline;
use bhyve_lab::{
    lab_dir, results, shell_quote, GuestImages, JobOutput, Lab, LabOptions, PciIrqs,
    GUEST_USERSPACE_MARKER, JOB_PRELUDE,
};

/// An L2 boot takes 30–60 s at emulator speed (the clock starts when L1
/// starts the job, not while it waits for its turn).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(240);

pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Result<Lab, String>> = OnceLock::new();
    LAB.get_or_init(|| Lab::boot(&LabOptions::default()).map_err(|e| e.to_string()))
        .as_ref()
        .unwrap_or_else(|e| panic!("the lab did not start: {e}"))
}

/// The images `prepare` builds, once per test process (`cell` holds
/// them); a failure fails every test that asks.
pub fn images_once(
    cell: &'static OnceLock<Result<GuestImages, String>>,
    prepare: impl FnOnce() -> bhyve_lab::Result<GuestImages>,
) -> &'static GuestImages {
    cell.get_or_init(|| prepare().map_err(|e| e.to_string()))
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
}

/// Debian's cloud kernel with the drivers built into it.
pub fn images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    images_once(&IMAGES, || GuestImages::prepare(&lab_dir(), &[]))
}

/// Images whose initramfs loads the ACPI button and evdev, and the
/// virtio PCI transport with every virtio driver (all modules in the
/// cloud kernel). One set for every test that needs any of them, so the
/// lab builds one initramfs.
pub fn virtio_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    images_once(&IMAGES, || {
        GuestImages::prepare(
            &lab_dir(),
            &[
                "button",
                "evdev",
                "virtio_pci",
                "virtio_rng",
                "virtio_blk",
                "virtio_net",
                "virtio_console",
                "virtio_input",
                "virtio_scsi",
                "sd_mod",
            ],
        )
    })
}

/// Debian's generic kernel (the cloud one lacks 9P, ahci, e1000, …)
/// with the initramfs loading `modules`.
pub fn generic_kernel_images(
    cell: &'static OnceLock<Result<GuestImages, String>>,
    modules: &[&str],
    programs: &[bhyve_lab::Program],
) -> &'static GuestImages {
    images_once(cell, || {
        GuestImages::prepare_kernel_with(&lab_dir(), "linux-image-amd64", modules, programs)
    })
}

/// What one job left: its output, its `RESULT` lines and the guest console.
pub struct Run {
    pub out: JobOutput,
    pub console: String,
}

impl Run {
    pub fn result(&self, key: &str) -> Option<String> {
        results(&self.out.output)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn expect(&self, key: &str, want: &str) {
        assert_eq!(
            self.result(key).as_deref(),
            Some(want),
            "RESULT {key}\n{}",
            self.explain()
        );
    }

    pub fn expect_console(&self, needle: &str) {
        assert!(
            self.console.contains(needle),
            "the guest console lacks {needle:?}\n{}",
            self.explain()
        );
    }

    /// The guest's `LABR key value` lines (what follows `LABR `).
    pub fn labr(&self) -> Vec<String> {
        self.console
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once("LABR "))
            .map(|(_, v)| v.trim_end().to_string())
            .collect()
    }

    /// Fails unless every line of `want` is among the guest's `LABR`
    /// lines; returns them.
    pub fn expect_labr(&self, want: &[&str]) -> Vec<String> {
        let lines = self.labr();
        for w in want {
            assert!(
                lines.iter().any(|l| l == w),
                "{w:?} not in {lines:?}\n{}",
                self.explain()
            );
        }
        lines
    }

    /// What the guest's `lab-pci-irqs BDF` reported: the function's
    /// capabilities and the interrupts its driver took.
    pub fn pci_irqs(&self, bdf: &str) -> PciIrqs {
        PciIrqs::parse(&self.console, bdf)
            .unwrap_or_else(|| panic!("no pci-irqs line for {bdf}\n{}", self.explain()))
    }

    /// bhyve exited by itself with `status` (`RESULT bhyve`), not killed
    /// by `wait_bhyve`'s deadline.
    pub fn expect_bhyve(&self, status: &str) {
        assert!(
            self.result("stuck").is_none(),
            "bhyve did not exit within 120 s and was killed\n{}",
            self.explain()
        );
        self.expect("bhyve", status);
    }

    pub fn explain(&self) -> String {
        let tail: Vec<&str> = self.console.lines().collect();
        format!(
            "--- job output:\n{}\n--- guest console (last lines):\n{}",
            self.out.output,
            tail[tail.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// The number after `key` in the first of `lines` that starts with it.
pub fn labr_num(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Shell helpers of these jobs, after the lab's [`JOB_PRELUDE`].
const PRELUDE: &str = r#"
# wait_bhyve PID: bhyve's exit status as `RESULT bhyve`; a bhyve still
# running 120 s later is killed and reported (`RESULT stuck=yes`).
wait_bhyve() {
    local i
    for ((i = 0; i < 1200; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$1" 2>/dev/null && { result stuck yes; kill -KILL "$1"; }
    wait "$1"
    result bhyve $?
}
"#;

/// The job's command that boots L2 in one command (`$BZIMAGE`,
/// `$INITRD`, `$CMDLINE`) on our bhyve: ACPI tables, 256 MiB, the PCI
/// platform (host bridge at slot 0, LPC bridge at 31) and com1 on the
/// console, plus `args` (`-c N`, `-W`, the devices under test). The guest
/// console goes to console.log ([`Run::console`]), bhyve's stderr to
/// bhyve.err. No line end, so that a job can add `&`.
pub fn bhyve_l2(args: &str, vm: &str) -> String {
    format!(
        "$BHYVE -A -m 256M -s 0,hostbridge {args} -s 31,lpc -l com1,stdio \\\n    \
         -o boot.kernel=\"$BZIMAGE\" -o boot.initrd=\"$INITRD\" \\\n    \
         -o boot.cmdline=\"$CMDLINE\" {vm} >console.log 2>bhyve.err </dev/null"
    )
}

/// Runs `body` in L1 with `$BHYVE`, `$BHYVELOAD`, `$BHYVECTL`, the guest
/// images (`$BZIMAGE`, `$VMLINUX`, `$INITRD`) and `$CMDLINE` (the L2 kernel
/// command line running `guest_script`, plus `extra`) defined, and the
/// shell helpers of [`PRELUDE`]. Fails if the job timed out or L2's
/// kernel panicked.
pub fn run(guest_script: &str, extra: &str, body: &str) -> Run {
    run_on(images(), guest_script, extra, body)
}

/// [`run`] with the guest images `img`.
pub fn run_on(img: &GuestImages, guest_script: &str, extra: &str, body: &str) -> Run {
    let vars = [
        ("BHYVE", env!("CARGO_BIN_EXE_bhyve").to_string()),
        ("BHYVELOAD", env!("CARGO_BIN_EXE_bhyveload").to_string()),
        ("BHYVECTL", env!("CARGO_BIN_EXE_bhyvectl").to_string()),
        ("BZIMAGE", img.bzimage.display().to_string()),
        ("VMLINUX", img.vmlinux.display().to_string()),
        ("INITRD", img.initramfs.display().to_string()),
        ("CMDLINE", cmdline(guest_script, extra).unwrap()),
    ];
    let mut script = String::from(JOB_PRELUDE);
    script.push_str(PRELUDE);
    for (k, v) in vars {
        script.push_str(&format!("{k}={}\n", shell_quote(&v)));
    }
    script.push_str(body);
    let out = lab().run(&script, JOB_TIMEOUT).unwrap();
    let console = std::fs::read(out.dir.join("console.log"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let run = Run { out, console };
    assert!(!run.out.timed_out, "the job timed out\n{}", run.explain());
    assert!(
        !run.console.contains("Kernel panic"),
        "the guest panicked\n{}",
        run.explain()
    );
    run
}

pub fn marker(cpus: u32) -> String {
    format!("{GUEST_USERSPACE_MARKER} cpus={cpus}")
}
