//! `bhyve-lab`: boots the real-OS lab's L1 and runs scripts in it.
//!
//!     bhyve-lab run SCRIPT [TIMEOUT_SECS]   run a bash script in L1
//!     bhyve-lab images                      fetch and build the L2 images
//!
//! The scripts see the host root read-only (so `target/debug/bhyve` and
//! the other host tools are there) and a writable job folder, `$LAB_JOB`.

use std::process::ExitCode;
use std::time::Duration;

use bhyve_lab::{lab_dir, GuestImages, Lab, LabOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("run") if args.len() >= 2 => run(&args[1], args.get(2)),
        Some("images") => GuestImages::prepare(&lab_dir(), &[]).map(|g| {
            println!("bzImage   {}", g.bzimage.display());
            println!("vmlinux   {}", g.vmlinux.display());
            println!("initramfs {}", g.initramfs.display());
            0
        }),
        _ => {
            eprintln!("usage: bhyve-lab run SCRIPT [TIMEOUT_SECS] | bhyve-lab images");
            return ExitCode::from(64);
        }
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("bhyve-lab: {e}");
            ExitCode::from(4)
        }
    }
}

fn run(script: &str, timeout: Option<&String>) -> bhyve_lab::Result<u8> {
    let body = std::fs::read_to_string(script).map_err(|source| bhyve_lab::LabError::Io {
        what: format!("reading {script}"),
        source,
    })?;
    let secs = timeout.and_then(|t| t.parse().ok()).unwrap_or(600);
    let lab = Lab::boot(&LabOptions::default())?;
    let out = lab.run(&body, Duration::from_secs(secs))?;
    print!("{}", out.output);
    if out.timed_out {
        eprintln!("bhyve-lab: the script was killed after {secs} s");
    }
    Ok(u8::try_from(out.status).unwrap_or(255))
}
