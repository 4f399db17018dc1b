//! bhyve-bench: runs our bhyve and QEMU on the same test guest and prints
//! the figures (and ratios) recorded in docs/PERFORMANCE.md.
//!
//! Timing tests would be flaky and say little; this command is run by hand
//! (`scripts/bench`) and its output pasted into the docs with the command.

mod boot;
mod net;
mod pio;
mod proc;
mod ramdir;
mod storage;
mod virtio;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: bhyve-bench [--runs N] [--iterations N] [--reqs N] [--seqreqs N]
                   [--frames N] [--rxframes N] [--dir DIR] [--ram huge|shm]
                   [boot] [pio] [blk] [net]
                   [ahci] [nvme]

boot  time from process start to the first serial byte of the `hello`
      PVH test guest, and peak RSS: our bhyve vs qemu-system-x86_64
      -M microvm -enable-kvm
pio   cost of one port-I/O exit round trip in our bhyve vs a minimal
      raw KVM_RUN loop (the floor)
blk   virtio-blk 4 KiB random read/write IOPS at QD 1 and 32 (--reqs
      requests each, default 2000) and 1 MiB sequential MiB/s
      (--seqreqs, default 64), our bhyve vs QEMU -M pc virtio-blk-pci,
      same guest and O_DIRECT file (in --dir, default the temp dir)
net   virtio-net frames/s, transmit (--frames, default 100000) to and
      receive (--rxframes, default 100000) from a tap the bench
      creates, our bhyve vs QEMU virtio-net-pci (root)
ahci  AHCI 4 KiB random read IOPS at QD 1 and 32 (NCQ; --reqs requests
      each), our bhyve's ahci vs QEMU -M pc ahci + ide-hd, same guest
      (ahci_io bench=1) and O_DIRECT file (in --dir)
nvme  the same for NVMe: our bhyve's nvme vs QEMU's nvme (nvme_io
      bench=1, one I/O queue pair)

--ram   where our guest RAM (the VM's memory file) lives for blk, net,
        ahci and nvme: `huge` (default) a private tmpfs with transparent
        huge pages, as QEMU's anonymous RAM gets them (needs root; else
        /dev/shm); `shm` /dev/shm, 4 KiB pages

Without a benchmark name: boot and pio. BHYVE (default: the bhyve next
to this binary) and QEMU (default: qemu-system-x86_64) select the
programs.";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn bhyve_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BHYVE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating bhyve-bench")?;
    let p = exe.with_file_name("bhyve");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release) or set BHYVE",
            p.display()
        );
    }
    Ok(p)
}

fn main() -> Result<()> {
    let mut runs = 10usize;
    let mut iterations = 200_000u32;
    let mut reqs = 2000u64;
    let mut seqreqs = 64u64;
    let mut frames = 100_000u64;
    let mut rxframes = 100_000u64;
    let mut dir = None;
    let mut ram = ramdir::Ram::Huge;
    let mut what = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--iterations" => {
                iterations = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--reqs" => reqs = number(args.next()),
            "--seqreqs" => seqreqs = number(args.next()),
            "--frames" => frames = number(args.next()),
            "--rxframes" => rxframes = number(args.next()),
            "--dir" => dir = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--ram" => {
                ram = args
                    .next()
                    .and_then(|v| ramdir::Ram::parse(&v))
                    .unwrap_or_else(|| usage())
            }
            "boot" | "pio" | "blk" | "net" | "ahci" | "nvme" => what.push(a),
            _ => usage(),
        }
    }
    if what.is_empty() {
        what = vec!["boot".into(), "pio".into()];
    }
    let work = tempdir()?;
    let bhyve = bhyve_path()?;
    let qemu = std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    for w in &what {
        match w.as_str() {
            "boot" => boot::run(&bhyve, &qemu, &work, runs)?,
            "pio" => pio::run(&bhyve, &work, iterations, runs)?,
            "blk" | "ahci" | "nvme" => {
                let p = virtio::BlkParams {
                    runs,
                    reqs,
                    seqreqs,
                    dir: dir.clone().unwrap_or_else(|| work.clone()),
                    ram,
                };
                match w.as_str() {
                    "blk" => virtio::run_blk(&bhyve, &qemu, &work, &p)?,
                    "ahci" => storage::run(storage::Controller::Ahci, &bhyve, &qemu, &work, &p)?,
                    _ => storage::run(storage::Controller::Nvme, &bhyve, &qemu, &work, &p)?,
                }
            }
            "net" => net::run_net(&bhyve, &qemu, &work, ram, runs, frames, rxframes)?,
            _ => unreachable!(),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A positive count option's value.
fn number(v: Option<String>) -> u64 {
    match v.and_then(|v| v.parse().ok()) {
        Some(n) if n > 0 => n,
        _ => usage(),
    }
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("bhyve-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// Median of a non-empty sample.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
