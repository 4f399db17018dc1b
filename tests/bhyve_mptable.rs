//! bhyve writes the Intel MP table at every start (both boot paths),
//! sized by `-c`, and not at all with `-Y`. The `mptable` test guest scans
//! for it as a kernel does, checks its checksums and prints its entries.

mod common;

use std::process::Command;

use bhyve_testguests::{exit_status, EXIT_PASS};
use common::*;

const BHYVELOAD: &str = env!("CARGO_BIN_EXE_bhyveload");

/// What the guest prints after its `cpu` lines: bhyve's buses, I/O APIC
/// and interrupt assignments (ISA IRQ 0 on pin 2, SCI level/low).
const PLATFORM: &str = "\
bus 0x0 PCI   
bus 0x1 ISA   
ioapic 0x0 0xfec00000
ioint 0x3 0x0 0x1 0x0 0x0 0x0
ioint 0x0 0x0 0x1 0x1 0x0 0x1
ioint 0x0 0x0 0x1 0x0 0x0 0x2
ioint 0x0 0x0 0x1 0x3 0x0 0x3
ioint 0x0 0x0 0x1 0x4 0x0 0x4
ioint 0x0 0x0 0x1 0x5 0x0 0x5
ioint 0x0 0x0 0x1 0x6 0x0 0x6
ioint 0x0 0x0 0x1 0x7 0x0 0x7
ioint 0x0 0x0 0x1 0x8 0x0 0x8
ioint 0x0 0xf 0x1 0x9 0x0 0x9
ioint 0x0 0x0 0x1 0xa 0x0 0xa
ioint 0x0 0x0 0x1 0xb 0x0 0xb
ioint 0x0 0x0 0x1 0xc 0x0 0xc
ioint 0x0 0x0 0x1 0xd 0x0 0xd
ioint 0x0 0x0 0x1 0xe 0x0 0xe
ioint 0x0 0x0 0x1 0xf 0x0 0xf
lint 0x3 0x0 0x0 0x0 0xff 0x0
lint 0x1 0x0 0x0 0x0 0xff 0x1
";

/// The guest's whole output for `n` CPUs.
fn expected(n: u32) -> String {
    let mut s = String::from("mptable: at 0xf0000 table 0xf0010\nmptable: checksums ok\n");
    for i in 0..n {
        let flags = if i == 0 { 3 } else { 1 };
        s += &format!("cpu {i:#x} flags {flags:#x}\n");
    }
    s += PLATFORM;
    s += &format!("mptable: {n:#x} cpus\n");
    s
}

fn run_bhyve(s: &Scratch, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["-l", "com1,stdio", "-l", "pc-testdev"];
    args.extend_from_slice(extra);
    let o = s.run(&args);
    (o.status.code(), stdout(&o), stderr(&o))
}

#[test]
fn table_follows_cpu_count_and_y_removes_it() {
    let s = Scratch::new("mptable");
    let k = kernel_opt(&s.guest("mptable"));
    for n in [1u32, 3] {
        let c = n.to_string();
        let (code, out, err) = run_bhyve(&s, &["-c", &c, "-o", &k, "vm0"]);
        assert_eq!(code, Some(exit_status(EXIT_PASS)), "-c {n}: {out}{err}");
        assert_eq!(out, expected(n), "-c {n}");
    }
    let (code, out, err) = run_bhyve(&s, &["-c", "2", "-Y", "-o", &k, "vm0"]);
    assert_eq!(code, Some(exit_status(EXIT_PASS)), "{out}{err}");
    assert_eq!(out, "mptable: none\n");
    assert!(!err.contains("-Y"), "-Y takes effect silently: {err}");
}

#[test]
fn bhyve_writes_it_after_bhyveload() {
    let s = Scratch::new("mptable-load");
    let guest = s.guest("mptable");
    let load = |name: &str| {
        let o = Command::new(BHYVELOAD)
            .args(["-m", "64M", "-k", guest.to_str().unwrap(), name])
            .env("BHYVE_RUNDIR", s.rundir())
            .output()
            .unwrap();
        assert!(o.status.success(), "bhyveload: {}", stderr(&o));
    };
    load("vm1");
    let (code, out, err) = run_bhyve(&s, &["-m", "64M", "-c", "2", "vm1"]);
    assert_eq!(code, Some(exit_status(EXIT_PASS)), "{out}{err}");
    assert_eq!(out, expected(2));
    load("vm2");
    let (code, out, err) = run_bhyve(&s, &["-m", "64M", "-Y", "vm2"]);
    assert_eq!(code, Some(exit_status(EXIT_PASS)), "{out}{err}");
    assert_eq!(out, "mptable: none\n");
}

/// The wiring the table describes is the wiring the guest gets: the PIT
/// interrupts I/O APIC pin 2, tick after tick, and nothing arrives on
/// pin 0 (with KVM's default routing the ticks go to pin 0 instead).
#[test]
fn pit_interrupts_arrive_on_ioapic_pin_2() {
    let s = Scratch::new("pit-ioapic");
    let k = kernel_opt(&s.guest("pit_ioapic"));
    let (code, out, err) = run_bhyve(&s, &["-o", &k, "vm0"]);
    assert_eq!(code, Some(exit_status(EXIT_PASS)), "{out}{err}");
    assert_eq!(out, "pit_ioapic: 0xa ticks on pin 2, pin 0 saw 0x0\n");
}
