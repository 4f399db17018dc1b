//! The real-OS lab.
//!
//! This machine's `/dev/kvm` cannot run a guest kernel, but QEMU's software
//! CPU emulates AMD-V: inside `qemu-system-x86_64 -accel tcg -cpu max`,
//! Debian's kernel loads `kvm_amd` and offers a real `/dev/kvm`. The lab
//! boots such an L1 guest once, shares the host root with it read-only (so
//! the freshly built `bhyve` and every host tool run there unchanged) plus
//! one writable work folder, and runs scripts in it. The scripts boot
//! unmodified Debian kernels (L2) on our bhyve, whose own drivers then judge
//! our devices.
//!
//! Every input comes from Debian packages fetched at run time
//! ([`debs`]); nothing prebuilt is committed.

pub mod cpio;
pub mod debs;
pub mod efi;
pub mod elf;
pub mod guest;
pub mod kmod;
pub mod l1;
pub mod programs;
pub mod sercon;
pub mod tools;
pub mod vmlinux;

use std::path::{Path, PathBuf};

pub use guest::{GuestImages, PciIrqs, GUEST_END_MARKER, GUEST_USERSPACE_MARKER};
pub use l1::{JobOutput, Lab, LabOptions};
pub use programs::Program;

/// Why the lab could not do what was asked. Every message names the missing
/// piece or the failing command, so a CI log says what to install or fix.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    L1(String),
}

pub type Result<T> = std::result::Result<T, LabError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// The lab's folder: `$BHYVE_LAB_DIR`, else `target/lab` in this workspace.
/// Downloads are cached under `cache/`, so only the first run fetches.
pub fn lab_dir() -> PathBuf {
    match std::env::var_os("BHYVE_LAB_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/lab"),
    }
}

/// Runs a host command, failing with its stderr when it does not succeed.
pub(crate) fn run_cmd(cmd: &mut std::process::Command) -> Result<std::process::Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LabError::Missing(format!(
                "{shown}: program not found (install it: see .ci/run for the package list)"
            ))
        } else {
            LabError::Io {
                what: shown.clone(),
                source: e,
            }
        }
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out)
}

/// Bash helpers (`result`, `wait_for`, a private `$BHYVE_RUNDIR`) to put at
/// the start of a job script.
pub const JOB_PRELUDE: &str = include_str!("prelude.sh");

/// The `RESULT key=value` lines a job printed, in order.
pub fn results(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Quotes `s` for bash (single quotes).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
