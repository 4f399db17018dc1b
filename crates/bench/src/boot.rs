//! Boot latency and footprint: process start to the first serial byte of
//! the `hello` PVH guest, and peak RSS, for our bhyve and QEMU's microvm.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::median;
use crate::proc::{measure, Sample};

const MEM_MIB: u32 = 64;

fn bhyve_cmd(bhyve: &Path, guest: &Path, rundir: &Path) -> Command {
    let mut c = Command::new(bhyve);
    c.env("BHYVE_RUNDIR", rundir)
        .arg("-m")
        .arg(format!("{MEM_MIB}M"))
        .args(["-l", "com1,stdio", "-l", "pc-testdev", "-o"])
        .arg(format!("boot.kernel={}", guest.display()))
        .arg("bench");
    c
}

fn qemu_cmd(qemu: &str, guest: &Path) -> Command {
    let mut c = Command::new(qemu);
    c.args(["-M", "microvm,rtc=off", "-enable-kvm", "-m"])
        .arg(MEM_MIB.to_string())
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
        ])
        .arg("-kernel")
        .arg(guest);
    c
}

struct Summary {
    first_ms: f64,
    total_ms: f64,
    rss_mib: f64,
}

fn summarize(name: &str, samples: &[Sample]) -> Result<Summary> {
    let expected = bhyve_testguests::PASS_STATUS;
    for s in samples {
        if s.status != expected {
            bail!(
                "{name}: guest exited with {} (expected {expected}); output: {:?}",
                s.status,
                String::from_utf8_lossy(&s.output)
            );
        }
    }
    let mut first: Vec<f64> = samples
        .iter()
        .map(|s| s.first_byte.as_secs_f64() * 1e3)
        .collect();
    let mut total: Vec<f64> = samples
        .iter()
        .map(|s| s.total.as_secs_f64() * 1e3)
        .collect();
    let rss = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    Ok(Summary {
        first_ms: median(&mut first),
        total_ms: median(&mut total),
        rss_mib: rss,
    })
}

pub fn run(bhyve: &Path, qemu: &str, work: &Path, runs: usize) -> Result<()> {
    let guest = bhyve_testguests::write_guest("hello", work)?;
    let rundir = work.join("run");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs.max(1) {
        ours.push(measure(&mut bhyve_cmd(bhyve, &guest, &rundir))?);
        theirs.push(measure(&mut qemu_cmd(qemu, &guest))?);
    }
    let _ = std::fs::remove_dir_all(&rundir);
    let a = summarize("bhyve", &ours)?;
    let b = summarize("qemu", &theirs)?;
    println!(
        "boot: `hello` PVH guest, {MEM_MIB} MiB, median of {} runs",
        runs.max(1)
    );
    println!("| metric | bhyve | qemu microvm | bhyve/qemu |");
    println!("|---|---|---|---|");
    println!(
        "| start → first serial byte | {:.1} ms | {:.1} ms | {:.2} |",
        a.first_ms,
        b.first_ms,
        a.first_ms / b.first_ms
    );
    println!(
        "| start → exit | {:.1} ms | {:.1} ms | {:.2} |",
        a.total_ms,
        b.total_ms,
        a.total_ms / b.total_ms
    );
    println!(
        "| peak RSS | {:.1} MiB | {:.1} MiB | {:.2} |",
        a.rss_mib,
        b.rss_mib,
        a.rss_mib / b.rss_mib
    );
    Ok(())
}
