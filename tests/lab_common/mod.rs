//! What the real-OS lab test files share (tests/lab_linux.rs,
//! tests/lab_virtio.rs): one L1 per test process, the L2 images, and
//! running a job that boots L2 on our bhyve.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use bhyve_lab::guest::cmdline;
use bhyve_lab::{
    lab_dir, results, shell_quote, GuestImages, JobOutput, Lab, LabOptions, GUEST_USERSPACE_MARKER,
    JOB_PRELUDE,
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

pub fn images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| GuestImages::prepare(&lab_dir(), &[]).map_err(|e| e.to_string()))
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
}

/// Images whose initramfs loads the ACPI button and evdev, and the
/// virtio PCI transport with every virtio driver (all modules in the
/// cloud kernel). One set for every test that needs any of them, so the
/// lab builds one initramfs.
pub fn virtio_images() -> &'static GuestImages {
    static IMAGES: OnceLock<Result<GuestImages, String>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
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
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("the guest images could not be built: {e}"))
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

    pub fn explain(&self) -> String {
        let tail: Vec<&str> = self.console.lines().collect();
        format!(
            "--- job output:\n{}\n--- guest console (last lines):\n{}",
            self.out.output,
            tail[tail.len().saturating_sub(40)..].join("\n")
        )
    }
}

/// Runs `body` in L1 with `$BHYVE`, `$BHYVELOAD`, `$BHYVECTL`, the guest
/// images (`$BZIMAGE`, `$VMLINUX`, `$INITRD`) and `$CMDLINE` (the L2 kernel
/// command line running `guest_script`, plus `extra`) defined.
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
