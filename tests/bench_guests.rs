//! The benchmark guests of `bhyve-bench blk`/`net` (virtio_blk_bench,
//! virtio_net_bench) run briefly under our bhyve, so they cannot rot:
//! every phase must report a well-formed `BENCH` line. No timing is
//! asserted (figures come from scripts/bench, docs/PERFORMANCE.md).

mod common;

use common::vm::guest_args;
use common::*;

/// (name, count, unit, bytes, tsc, kicks) of each `BENCH` line; panics
/// on a malformed one.
fn bench_lines(out: &str) -> Vec<(String, u64, String, u64, u64, u64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("BENCH "))
        .map(|rest| {
            let f: Vec<&str> = rest.split_ascii_whitespace().collect();
            assert_eq!(f.len(), 9, "malformed BENCH line {rest:?}");
            assert_eq!((f[4], f[6], f[8]), ("bytes", "tsc", "kicks"), "{rest:?}");
            let n = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{rest:?}"));
            (f[0].into(), n(f[1]), f[2].into(), n(f[3]), n(f[5]), n(f[7]))
        })
        .collect()
}

/// Runs bench guest `name` with `slot` to its pass status; its output.
fn run_bench(s: &Scratch, name: &str, slot: &str, cmdline: &str) -> String {
    let args = guest_args(&s.guest(name), "64M", &[slot], Some(cmdline), "vm");
    let o = s.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(33),
        "stdout: {out}\nstderr: {}",
        stderr(&o)
    );
    out
}

#[test]
fn virtio_blk_bench_reports_every_phase() {
    let s = Scratch::new("bench-blk");
    let disk = s.file("disk.img", &vec![0x5a; 8 << 20]);
    let slot = format!("4,virtio-blk,{}", disk.display());
    let out = run_bench(&s, "virtio_blk_bench", &slot, "reqs=40 seqreqs=3");
    let lines = bench_lines(&out);
    let names: Vec<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "randread-4k-qd1",
            "randread-4k-qd32",
            "randwrite-4k-qd1",
            "randwrite-4k-qd32",
            "seqread-1m-qd4",
            "seqwrite-1m-qd4"
        ]
    );
    for (name, count, unit, bytes, tsc, kicks) in &lines {
        let (want_count, size) = if name.contains("-1m-") {
            (3, 1 << 20)
        } else {
            (40, 4096)
        };
        assert_eq!((*count, unit.as_str()), (want_count, "req"), "{name}");
        assert_eq!(*bytes, want_count * size, "{name}");
        assert!(*tsc > 0, "{name}");
        // At least the first batch was notified, never more than once a request.
        assert!(*kicks >= 1 && *kicks <= *count, "{name}: {kicks} kicks");
    }
    // Writes stamp their first 8 bytes with their sector: some 4 KiB
    // block must now start with its own sector number.
    let after = std::fs::read(&disk).unwrap();
    let stamped = after
        .chunks_exact(4096)
        .enumerate()
        .filter(|(i, b)| b[..8] == ((*i as u64) * 8).to_le_bytes())
        .count();
    assert!(stamped >= 1, "no write reached the file");
    assert!(out.contains("virtio_blk_bench: done"));
}

#[test]
fn virtio_net_bench_reports_its_frames() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("skipped: virtio_net_bench needs root and /dev/net/tun (a tap)");
        return;
    }
    let s = Scratch::new("bench-net");
    let tap = format!("bbt{}", std::process::id() % 100_000);
    let slot = format!("5,virtio-net,{tap}");
    let out = run_bench(&s, "virtio_net_bench", &slot, "frames=500 rxframes=5");
    let lines = bench_lines(&out);
    assert_eq!(lines.len(), 2, "{out}");
    let (name, count, unit, bytes, tsc, kicks) = &lines[0];
    assert_eq!(
        (name.as_str(), *count, unit.as_str()),
        ("tx-60b", 500, "frames")
    );
    assert_eq!(*bytes, 500 * 60);
    assert!(*tsc > 0 && *kicks >= 1 && *kicks <= 500, "{out}");
    // Receive: nobody brought the tap up, so nothing arrives; the guest
    // posts its buffers, gives up after ~3 s of silence and reports zero.
    assert!(out.contains("virtio_net_bench: receiving"), "{out}");
    let (name, count, _, bytes, tsc, _) = &lines[1];
    assert_eq!((name.as_str(), *count, *bytes, *tsc), ("rx-60b", 0, 0, 0));
    assert!(out.contains("virtio_net_bench: done"), "{out}");
}
