//! virtio-blk and virtio-net throughput: the `virtio_blk_bench` and
//! `virtio_net_bench` test guests under our bhyve and under QEMU's
//! `-M pc` with `virtio-blk-pci`/`virtio-net-pci`, same guest, same
//! backing file or tap.
//!
//! The guests time themselves with the TSC and print `BENCH` lines; the
//! host converts ticks with its own TSC frequency (KVM gives the guest
//! the host's constant TSC), so VMM start-up (seconds of SeaBIOS for
//! QEMU's `-M pc`) is not part of any figure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::median;
use crate::ramdir::{Ram, RunDir};

const MEM_MIB: u32 = 64;
/// Size of the benchmark disk: large enough that random 4 KiB reads
/// mostly miss any cache below O_DIRECT.
pub(crate) const DISK_MIB: u64 = 256;
/// A guest that has not finished by then is hung.
const DEADLINE: Duration = Duration::from_secs(600);

/// One `BENCH NAME COUNT UNIT BYTES bytes CYCLES tsc KICKS kicks` line.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchLine {
    pub name: String,
    pub count: u64,
    pub unit: String,
    pub bytes: u64,
    pub cycles: u64,
    /// Doorbells the guest rang (each one exit to the VMM).
    pub kicks: u64,
}

/// The `BENCH` lines of a guest's console output; any malformed one is
/// an error (a guest and this parser out of step must not go unnoticed).
pub fn parse(output: &str) -> Result<Vec<BenchLine>> {
    let mut v = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("BENCH ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        let num = |s: &str| s.parse::<u64>().ok();
        match f.as_slice() {
            [name, count, unit, bytes, "bytes", cycles, "tsc", kicks, "kicks"] => {
                let (Some(count), Some(bytes), Some(cycles), Some(kicks)) =
                    (num(count), num(bytes), num(cycles), num(kicks))
                else {
                    bail!("malformed BENCH line: {line:?}");
                };
                if cycles == 0 {
                    bail!("BENCH line with zero TSC ticks: {line:?}");
                }
                v.push(BenchLine {
                    name: name.to_string(),
                    count,
                    unit: unit.to_string(),
                    bytes,
                    cycles,
                    kicks,
                });
            }
            _ => bail!("malformed BENCH line: {line:?}"),
        }
    }
    Ok(v)
}

/// The host TSC frequency, measured against the monotonic clock.
pub(crate) fn tsc_hz() -> f64 {
    // SAFETY: rdtsc has no memory effects; every x86-64 CPU has it.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let (t0, c0) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(300));
    let (c1, t1) = (tsc(), Instant::now());
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64()
}

/// Runs a VMM with the guest to completion; its console output. With a
/// marker, the flag is set once a console line starts with it.
pub(crate) fn run_guest(
    cmd: &mut Command,
    who: &str,
    marker: Option<(&'static str, Arc<AtomicBool>)>,
) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let out = child.stdout.take().context("stdout is piped")?;
    let mut err = child.stderr.take().context("stderr is piped")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    // Lines are read as they come, so a marker can start host-side work
    // while the guest runs.
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        let mut lines = BufReader::new(out);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if let Some((m, flag)) = &marker {
                if line.starts_with(m.as_bytes()) {
                    flag.store(true, Ordering::Release);
                }
            }
            output.append(&mut line);
        }
        output
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let errors = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let expected = bhyve_testguests::PASS_STATUS;
    match status.map(|s| s.code()) {
        Some(Some(c)) if c == expected => Ok(output),
        Some(code) => bail!(
            "{who}: guest exited with {code:?} (expected {expected})\noutput: {output}\nstderr: {errors}"
        ),
        None => bail!("{who}: no exit after {DEADLINE:?}\noutput: {output}"),
    }
}

pub(crate) fn bhyve_cmd(
    bhyve: &Path,
    rundir: &Path,
    guest: &Path,
    cmdline: &str,
    slot: &str,
) -> Command {
    bhyve_cmd_mem(MEM_MIB, bhyve, rundir, guest, cmdline, slot)
}

/// [`bhyve_cmd`] with `mem_mib` of guest RAM.
fn bhyve_cmd_mem(
    mem_mib: u32,
    bhyve: &Path,
    rundir: &Path,
    guest: &Path,
    cmdline: &str,
    slot: &str,
) -> Command {
    let mut c = Command::new(bhyve);
    c.env("BHYVE_RUNDIR", rundir)
        .arg("-m")
        .arg(format!("{mem_mib}M"))
        .args(["-l", "com1,stdio", "-l", "pc-testdev", "-s", "0,hostbridge"])
        .args(["-s", slot, "-o"])
        .arg(format!("boot.kernel={}", guest.display()))
        .arg("-o")
        .arg(format!("boot.cmdline={cmdline}"))
        .arg("bench");
    c
}

pub(crate) fn qemu_cmd(qemu: &str, guest: &Path, cmdline: &str, dev: &[String]) -> Command {
    qemu_cmd_mem(MEM_MIB, qemu, guest, cmdline, dev)
}

/// [`qemu_cmd`] with `mem_mib` of guest RAM.
fn qemu_cmd_mem(mem_mib: u32, qemu: &str, guest: &Path, cmdline: &str, dev: &[String]) -> Command {
    let mut c = Command::new(qemu);
    c.args(["-accel", "kvm", "-M", "pc", "-cpu", "host", "-m"])
        .arg(mem_mib.to_string())
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .args(dev)
        .arg("-kernel")
        .arg(guest)
        .arg("-append")
        .arg(cmdline);
    c
}

/// One table row: per run, rates (per second) and doorbells per
/// request, ours and QEMU's; the rate's unit.
#[derive(Default)]
struct Row {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    ours_kicks: Vec<f64>,
    theirs_kicks: Vec<f64>,
    unit: String,
}

#[derive(Default)]
pub(crate) struct Table {
    rows: BTreeMap<String, Row>,
    order: Vec<String>,
}

impl Table {
    pub(crate) fn add(&mut self, lines: &[BenchLine], hz: f64, ours: bool) {
        for l in lines {
            let secs = l.cycles as f64 / hz;
            // 1 MiB phases are throughput, the rest operations per second.
            let (rate, unit) = if l.bytes / l.count.max(1) >= 1 << 20 {
                (
                    l.bytes as f64 / secs / (1 << 20) as f64,
                    "MiB/s".to_string(),
                )
            } else if l.unit == "req" {
                (l.count as f64 / secs, "IOPS".to_string())
            } else {
                (l.count as f64 / secs, format!("{}/s", l.unit))
            };
            if !self.rows.contains_key(&l.name) {
                self.order.push(l.name.clone());
            }
            let r = self.rows.entry(l.name.clone()).or_default();
            r.unit = unit;
            let kicks = l.kicks as f64 / l.count.max(1) as f64;
            if ours {
                r.ours.push(rate);
                r.ours_kicks.push(kicks);
            } else {
                r.theirs.push(rate);
                r.theirs_kicks.push(kicks);
            }
        }
    }

    pub(crate) fn print(&mut self) {
        println!(
            "| line | bhyve (min–max) | qemu (min–max) | bhyve/qemu | kicks/req bhyve, qemu |"
        );
        println!("|---|---|---|---|---|");
        for name in &self.order {
            let Some(r) = self.rows.get_mut(name) else {
                continue;
            };
            if r.ours.is_empty() || r.theirs.is_empty() {
                continue;
            }
            let (a, b) = (median(&mut r.ours), median(&mut r.theirs));
            let (ka, kb) = (median(&mut r.ours_kicks), median(&mut r.theirs_kicks));
            let unit = &r.unit;
            // median() sorted the samples: the range shows the noise.
            let range = |v: &[f64]| format!("{:.0}–{:.0}", v[0], v[v.len() - 1]);
            println!(
                "| {name} | {a:.0} {unit} ({}) | {b:.0} {unit} ({}) | {:.2} | {ka:.2}, {kb:.2} |",
                range(&r.ours),
                range(&r.theirs),
                a / b
            );
        }
    }
}

/// Order of run `run`: ours first on even runs, QEMU first on odd ones.
pub(crate) fn first_then_second(run: usize) -> [bool; 2] {
    let ours_first = run.is_multiple_of(2);
    [ours_first, !ours_first]
}

/// Runs the guest `runs` times under each VMM, alternating who goes
/// first (what one run leaves behind — disk writeback, a cold cache —
/// must not always fall on the same VMM), checks each run reported
/// exactly `phases`, and tabulates them. `command(ours)` builds the run.
pub(crate) fn alternating_runs(
    runs: usize,
    hz: f64,
    phases: &[&str],
    mut command: impl FnMut(bool) -> Command,
) -> Result<Table> {
    let mut t = Table::default();
    for run in 0..runs.max(1) {
        for ours in first_then_second(run) {
            let who = if ours { "bhyve" } else { "qemu" };
            let lines = parse(&run_guest(&mut command(ours), who, None)?)?;
            check_lines(who, &lines, phases)?;
            t.add(&lines, hz, ours);
        }
    }
    Ok(t)
}

/// Checks that a run reported exactly the expected phases.
pub(crate) fn check_lines(who: &str, lines: &[BenchLine], expected: &[&str]) -> Result<()> {
    let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
    if names != expected {
        bail!("{who}: BENCH lines {names:?}, expected {expected:?}");
    }
    Ok(())
}

pub const BLK_PHASES: &[&str] = &[
    "randread-4k-qd1",
    "randread-4k-qd32",
    "randwrite-4k-qd1",
    "randwrite-4k-qd32",
    "seqread-1m-qd4",
    "seqwrite-1m-qd4",
];

/// Writes the benchmark disk with non-zero data, so reads hit allocated
/// blocks (holes and unwritten extents read back without I/O).
pub(crate) fn make_disk(path: &Path) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..DISK_MIB {
        for b in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

/// Options of the storage benchmarks (blk, ahci, nvme; `seqreqs` is
/// blk's only).
pub struct BlkParams {
    pub runs: usize,
    pub reqs: u64,
    pub seqreqs: u64,
    /// Directory of the disk file (must support O_DIRECT).
    pub dir: PathBuf,
    pub ram: Ram,
}

/// QEMU's drive `d` over the benchmark disk, bypassing the page cache
/// as our `nocache` does.
pub(crate) fn qemu_drive(disk: &Path) -> Vec<String> {
    vec![
        "-drive".to_string(),
        format!("file={},if=none,id=d,format=raw,cache=none", disk.display()),
    ]
}

/// One disk benchmark: which guest, how it is told to run, and how each
/// VMM attaches the disk file.
pub(crate) struct DiskBench<'a> {
    /// Names the disk file and the report.
    pub name: &'a str,
    pub guest: &'a str,
    pub cmdline: String,
    pub mem_mib: u32,
    pub phases: &'a [&'a str],
    /// Our `-s` argument for the disk file.
    pub slot: &'a dyn Fn(&Path) -> String,
    /// QEMU's arguments for the disk file.
    pub qemu_devices: &'a dyn Fn(&Path) -> Vec<String>,
}

/// Runs `b`: `p.runs` rounds of our bhyve and QEMU (alternating who goes
/// first) over a fresh disk file in `p.dir` (must support O_DIRECT),
/// removed afterwards; prints the table.
pub(crate) fn run_disk_bench(
    b: &DiskBench,
    bhyve: &Path,
    qemu: &str,
    work: &Path,
    p: &BlkParams,
) -> Result<()> {
    let guest = bhyve_testguests::write_guest(b.guest, work)?;
    let disk = p
        .dir
        .join(format!("bhyve-bench-{}-{}.img", b.name, std::process::id()));
    make_disk(&disk)?;
    let rundir = RunDir::new(work, p.ram);
    let result = (|| {
        let cmdline = &b.cmdline;
        let hz = tsc_hz();
        let slot = (b.slot)(&disk);
        let dev = (b.qemu_devices)(&disk);
        let mut t = alternating_runs(p.runs, hz, b.phases, |ours| {
            if ours {
                bhyve_cmd_mem(b.mem_mib, bhyve, rundir.path(), &guest, cmdline, &slot)
            } else {
                qemu_cmd_mem(b.mem_mib, qemu, &guest, cmdline, &dev)
            }
        })?;
        println!(
            "{}: `{}` ({cmdline}), {DISK_MIB} MiB raw file, O_DIRECT (bhyve nocache, \
             qemu cache=none), {}, TSC {:.0} MHz, median of {} runs",
            b.name,
            b.guest,
            rundir.describe(),
            hz / 1e6,
            p.runs.max(1)
        );
        t.print();
        Ok(())
    })();
    let _ = std::fs::remove_file(&disk);
    result
}

pub fn run_blk(bhyve: &Path, qemu: &str, work: &Path, p: &BlkParams) -> Result<()> {
    let bench = DiskBench {
        name: "blk",
        guest: "virtio_blk_bench",
        cmdline: format!("reqs={} seqreqs={}", p.reqs, p.seqreqs),
        mem_mib: MEM_MIB,
        phases: BLK_PHASES,
        slot: &|disk| format!("4,virtio-blk,{},nocache", disk.display()),
        qemu_devices: &|disk| {
            let mut v = qemu_drive(disk);
            v.extend(["-device".to_string(), "virtio-blk-pci,drive=d".to_string()]);
            v
        },
    };
    run_disk_bench(&bench, bhyve, qemu, work, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        let out = "virtio_blk_bench: running\n\
                   BENCH randread-4k-qd1 200 req 819200 bytes 120698762 tsc 200 kicks\n\
                   BENCH tx-60b 5 frames 300 bytes 7 tsc 1 kicks\n\
                   virtio_blk_bench: done\n";
        let v = parse(out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            BenchLine {
                name: "randread-4k-qd1".into(),
                count: 200,
                unit: "req".into(),
                bytes: 819200,
                cycles: 120698762,
                kicks: 200,
            }
        );
        assert_eq!(v[1].unit, "frames");
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "BENCH x 1 req 2 bytes 3 tsc",
            "BENCH x one req 2 bytes 3 tsc 1 kicks",
            "BENCH x 1 req 2 bytes 0 tsc 1 kicks",
            "BENCH x 1 req 2 bytes 3 cycles 1 kicks",
            "BENCH x 1 req 2 bytes 3 tsc 1 kicks extra",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_rates_use_the_tsc_frequency() {
        let mut t = Table::default();
        let line = |cycles| BenchLine {
            name: "r".into(),
            count: 1000,
            unit: "req".into(),
            bytes: 4096 * 1000,
            cycles,
            kicks: 500,
        };
        t.add(&[line(1_000_000)], 1e9, true); // 1 ms → 1e6 IOPS
        t.add(&[line(2_000_000)], 1e9, false);
        let r = t.rows.get("r").unwrap();
        assert_eq!(r.unit, "IOPS");
        assert!((r.ours[0] - 1e6).abs() < 1.0 && (r.theirs[0] - 5e5).abs() < 1.0);
        assert_eq!(r.ours_kicks, [0.5]);
    }

    #[test]
    fn one_mib_requests_are_throughput() {
        let mut t = Table::default();
        let l = BenchLine {
            name: "s".into(),
            count: 4,
            unit: "req".into(),
            bytes: 4 << 20,
            cycles: 1_000_000_000,
            kicks: 4,
        };
        t.add(&[l], 1e9, true);
        let r = t.rows.get("s").unwrap();
        assert_eq!(r.unit, "MiB/s");
        assert!((r.ours[0] - 4.0).abs() < 1e-9);
    }
}
