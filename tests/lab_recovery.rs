//! The lab's own recovery (crates/lab/src/l1.rs): when L1 stops during a
//! job (QEMU 7.2's emulated AMD-V has frozen L1 whole under a loaded
//! host), its heartbeat stops, a new L1 boots and the job runs once more.
//! Here QEMU's monitor `stop` freezes L1 as such a hang would.

use std::time::{Duration, Instant};

use bhyve_lab::{Lab, LabOptions};

#[test]
fn a_frozen_l1_is_booted_again_and_the_job_runs_once_more() {
    let opts = LabOptions {
        hang_after: Duration::from_secs(15),
        ..LabOptions::default()
    };
    let lab = Lab::boot(&opts).unwrap_or_else(|e| panic!("lab: {e}"));
    // The job says where it runs, then waits long enough to be frozen.
    let script = "echo \"boot $(cat /proc/sys/kernel/random/boot_id)\"\n\
                  touch \"$LAB_JOB/started\"\nsleep 10\necho done\n";
    let out = std::thread::scope(|s| {
        let freezer = s.spawn(|| {
            let started = lab.work_dir().join("jobs/1/started");
            let deadline = Instant::now() + Duration::from_secs(240);
            while !started.exists() {
                assert!(Instant::now() < deadline, "job 1 never started");
                std::thread::sleep(Duration::from_millis(100));
            }
            lab.freeze().unwrap();
        });
        let out = lab.run(script, Duration::from_secs(120));
        freezer.join().unwrap();
        out
    })
    .unwrap_or_else(|e| panic!("the job did not survive the frozen L1: {e}"));
    assert_eq!(out.status, 0, "{}", out.output);
    assert!(out.output.contains("done"), "{}", out.output);
    assert_eq!(lab.boots(), 2, "one new L1");
    assert!(
        out.dir.ends_with("jobs/2"),
        "the rerun has its own folder: {:?}",
        out.dir
    );
    // The first run started and was cut off by the freeze.
    let first = std::fs::read_to_string(lab.work_dir().join("jobs/1/out")).unwrap_or_default();
    assert!(!first.contains("done"), "job 1 finished after all: {first}");
    let boot = |o: &str| {
        o.lines()
            .find(|l| l.starts_with("boot "))
            .map(str::to_owned)
    };
    assert_ne!(
        boot(&first),
        boot(&out.output),
        "the rerun ran in another L1"
    );

    // The new L1 takes further jobs.
    let next = lab.run("echo again", Duration::from_secs(60)).unwrap();
    assert_eq!((next.status, next.output.trim()), (0, "again"));
}
