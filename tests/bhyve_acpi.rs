//! bhyve's ACPI tables (`-A`) as a guest finds them: the `acpi_tables`
//! test guest scans for the RSDP, follows RSDT and XSDT, checks every
//! checksum, prints the fields that place the platform and dumps the
//! DSDT. This test compares those fields with the platform bhyve(8)
//! gives (PM block, SCI, HPET, ECAM, COM1, one local APIC per `-c` CPU),
//! disassembles the DSDT the guest found with ACPICA's `iasl -d`, and
//! checks its `_PRT` against bhyve's INTx routing.

mod common;

use std::path::Path;
use std::process::Command;

use bhyve_testguests::{exit_status, EXIT_FAIL, EXIT_PASS};
use common::*;

/// Where bhyve puts the RSDP, and the BIOS area every table must sit in.
const RSDP_AT: u64 = 0xf2400;
const BIOS_AREA: (u64, u64) = (0xe0000, 0x10_0000);

/// One run of the guest, split into its report lines and the DSDT.
struct Report {
    status: Option<i32>,
    /// Every line but the `dsdt` hex dump.
    lines: Vec<String>,
    dsdt: Vec<u8>,
    raw: String,
}

impl Report {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn assert_has(&self, line: &str) {
        assert!(self.has(line), "no line '{line}' in:\n{}", self.raw);
    }

    /// The lines starting with `prefix`.
    fn starting(&self, prefix: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    /// `(signature, address, length)` of every `table` and `facs` line.
    fn tables(&self) -> Vec<(String, u64, u64)> {
        self.lines
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                match w.as_slice() {
                    ["table", sig, addr, "len", len, "rev", _] => {
                        Some((sig.to_string(), hex(addr), hex(len)))
                    }
                    ["facs", addr, "len", len, "version", _] => {
                        Some(("FACS".into(), hex(addr), hex(len)))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("'{s}' is not a 0x number: {e}"))
}

/// Runs the guest with `args` (and the guest command line `cmdline`).
fn run(s: &Scratch, args: &[&str], cmdline: &str) -> Report {
    let kernel = kernel_opt(&s.guest("acpi_tables"));
    let cmd = format!("boot.cmdline={cmdline}");
    let mut all = vec![
        "-l",
        "com1,stdio",
        "-l",
        "pc-testdev",
        "-o",
        &kernel,
        "-o",
        &cmd,
    ];
    all.extend_from_slice(args);
    all.push("vm0");
    let o = s.run(&all);
    let out = stdout(&o);
    let mut lines = Vec::new();
    let mut dsdt = Vec::new();
    for l in out.lines() {
        match l.strip_prefix("dsdt ") {
            Some(h) => {
                assert!(h.len() % 2 == 0, "odd hex line '{l}'");
                for i in (0..h.len()).step_by(2) {
                    dsdt.push(u8::from_str_radix(&h[i..i + 2], 16).expect("hex byte"));
                }
            }
            None => lines.push(l.to_string()),
        }
    }
    Report {
        status: o.status.code(),
        lines,
        dsdt,
        raw: format!("{out}{}", stderr(&o)),
    }
}

/// The FADT lines for bhyve's PM block at `pm` (`-o pm.base`, default
/// 0x400): SCI 9, SMI_CMD 0xb2 with 0xa0/0xa1, PM1a event 4 bytes,
/// control 2, a 32-bit timer, no GPE0, reset 6 → port 0xcf9.
fn fadt_lines(pm: u64) -> Vec<String> {
    let (evt, cnt, tmr) = (pm, pm + 4, pm + 8);
    vec![
        "fadt: sci 0x9 smi_cmd 0xb2 enable 0xa0 disable 0xa1".into(),
        format!("fadt: pm1a_evt {evt:#x} pm1a_cnt {cnt:#x} pm_tmr {tmr:#x} gpe0 0x0"),
        "fadt: lengths 0x4 0x2 0x4 0x0".into(),
        "fadt: flags 0x81525 boot_arch 0x14 century 0x32".into(),
        "fadt: reset 0x1 0x8 0x0 0x1 0xcf9 value 0x6".into(),
        format!("fadt: x_pm1a_evt 0x1 0x20 0x0 0x2 {evt:#x}"),
        format!("fadt: x_pm1a_cnt 0x1 0x10 0x0 0x2 {cnt:#x}"),
        format!("fadt: x_pm_tmr 0x1 0x20 0x0 0x3 {tmr:#x}"),
        "fadt: x_gpe0 0x0 0x0 0x0 0x0 0x0".into(),
        "fadt: pm timer, pm1_en, smi_cmd and pm1a_cnt respond".into(),
    ]
}

/// The MADT lines for `n` CPUs: one enabled local APIC per vCPU (UID =
/// APIC ID = index), I/O APIC 0 at 0xfec00000 from GSI 0, ISA IRQ 0 →
/// GSI 2, the SCI (9) level/active-low, LINT1 NMI on every CPU.
fn madt_lines(n: u32) -> Vec<String> {
    let mut v = vec!["madt: lapic_addr 0xfee00000 flags 0x1".to_string()];
    v.extend((0..n).map(|i| format!("lapic {i:#x} {i:#x} 0x1")));
    v.extend(
        [
            "ioapic 0x0 0xfec00000 0x0",
            "iso 0x0 0x0 0x2 0x5",
            "iso 0x0 0x9 0x9 0xf",
            "lapic_nmi 0xff 0x5 0x1",
        ]
        .map(String::from),
    );
    v
}

/// The lines from `first` on, as many as `want` has.
fn block<'a>(r: &'a Report, first: &str, len: usize) -> &'a [String] {
    let i = r
        .lines
        .iter()
        .position(|l| l == first)
        .unwrap_or_else(|| panic!("no line '{first}' in:\n{}", r.raw));
    &r.lines[i..(i + len).min(r.lines.len())]
}

/// Everything a good run with `n` CPUs, PM block `pm` and the PCI
/// functions `pci` (slot, vendor/device dword) must print.
fn check_report(r: &Report, n: u32, pm: u64, pci: &[(u8, u32)]) {
    assert_eq!(r.status, Some(exit_status(EXIT_PASS)), "{}", r.raw);
    let rsdp = &r.lines[0];
    assert!(
        rsdp.starts_with(&format!("acpi: rsdp {RSDP_AT:#x} rev 0x2 oem BHYVE  rsdt ")),
        "{rsdp}"
    );
    r.assert_has("acpi: xsdt lists the rsdt's tables");

    // bhyve's tables, in bhyve's order, all in the BIOS area above the
    // RSDP and not overlapping; the MADT sized for n CPUs.
    let tables = r.tables();
    let sigs: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        sigs,
        ["RSDT", "XSDT", "FACP", "FACS", "DSDT", "APIC", "HPET", "MCFG", "SPCR"],
        "{}",
        r.raw
    );
    let mut spans: Vec<(u64, u64)> = tables.iter().map(|t| (t.1, t.1 + t.2)).collect();
    spans.push((RSDP_AT, RSDP_AT + 36));
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "tables overlap: {spans:x?}");
    }
    assert!(spans[0].0 >= BIOS_AREA.0 && spans[spans.len() - 1].1 <= BIOS_AREA.1);
    let madt_len = 44 + 8 * u64::from(n) + 12 + 2 * 10 + 6;
    assert_eq!(tables[5].2, madt_len, "MADT length for {n} CPUs");

    let fadt = fadt_lines(pm);
    assert_eq!(block(r, &fadt[0], fadt.len()), fadt.as_slice());
    let facs = r.starting("fadt: facs ");
    assert_eq!(facs.len(), 1);
    let w: Vec<&str> = facs[0].split(' ').collect();
    assert_eq!(w[2], w[4], "FIRMWARE_CTRL = X_FIRMWARE_CTRL: {}", facs[0]);
    assert_eq!(w[6], w[8], "DSDT = X_DSDT: {}", facs[0]);
    assert_eq!(hex(w[2]) % 64, 0, "FACS alignment");

    let madt = madt_lines(n);
    assert_eq!(block(r, &madt[0], madt.len()), madt.as_slice());
    r.assert_has(
        "hpet: id 0x80860701 base 0x0 0x0 0x0 0x0 0xfed00000 number 0x0 min_tick 0x0 flags 0x1",
    );
    r.assert_has("hpet: capabilities match the block id");
    let mut mcfg = vec!["mcfg: base 0xe0000000 segment 0x0 buses 0x0 0xff".to_string()];
    mcfg.extend(
        pci.iter()
            .map(|(slot, id)| format!("pci {slot:#x} {id:#x}")),
    );
    assert_eq!(block(r, &mcfg[0], mcfg.len() + 1)[..mcfg.len()], mcfg[..]);
    assert_eq!(r.starting("pci ").len(), pci.len(), "{}", r.raw);
    r.assert_has("spcr: interface 0x0 base 0x1 0x8 0x0 0x0 0x3f8 irq_type 0x1 irq 0x4 baud 0x7");
    assert_eq!(
        r.lines.last().map(String::as_str),
        Some(format!("acpi: {n:#x} cpus, every checksum ok").as_str())
    );
    let dsdt_len = tables[4].2;
    assert_eq!(r.dsdt.len() as u64, dsdt_len, "the whole DSDT was dumped");
}

/// `iasl -d` of `table` in `dir`: must succeed without an error or
/// warning; returns the disassembly.
fn disassemble(dir: &Path, table: &[u8]) -> String {
    let dat = dir.join("dsdt.dat");
    std::fs::write(&dat, table).unwrap();
    let o = Command::new("iasl")
        .arg("-d")
        .arg(&dat)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run iasl ({e}): install acpica-tools (apt-get install -y acpica-tools)")
        });
    let log = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "iasl -d failed:\n{log}");
    for bad in ["Error", "Warning", "Invalid", "Incorrect", "mismatch"] {
        assert!(!log.contains(bad), "iasl -d: {bad}:\n{log}");
    }
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).expect("iasl wrote dsdt.dsl");
    for bad in ["****", "Invalid", "Incorrect", "Unknown", "should be"] {
        assert!(!dsl.contains(bad), "dsdt.dsl has '{bad}':\n{dsl}");
    }
    dsl
}

/// One `_PRT` entry: address (slot << 16 | 0xffff), pin (0 = INTA),
/// source (a link path, or empty for a GSI) and source index (the GSI).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prt {
    addr: u64,
    pin: u64,
    source: String,
    index: u64,
}

fn aml_int(s: &str) -> u64 {
    match s {
        "Zero" => 0,
        "One" => 1,
        _ => hex(s),
    }
}

/// The entries of `Name (NAME, Package …)` in an iasl disassembly; None
/// when there is no such name.
fn prt_package(dsl: &str, name: &str) -> Option<Vec<Prt>> {
    let start = dsl.find(&format!("Name ({name}, Package"))?;
    let mut items = Vec::new();
    let mut depth = 0i32;
    for line in dsl[start..].lines().skip(1) {
        let l = line.split("//").next().unwrap_or("").trim();
        match l {
            "{" => depth += 1,
            "}" | "}," | "})" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ if l.starts_with("Package") || l.is_empty() => {}
            _ => items.push(l.trim_end_matches(',').to_string()),
        }
    }
    assert_eq!(items.len() % 4, 0, "{name}: {items:?}");
    Some(
        items
            .chunks(4)
            .map(|c| {
                let (source, index) = if c[2] == "Zero" {
                    (String::new(), aml_int(&c[3]))
                } else {
                    (c[2].clone(), aml_int(&c[3]))
                };
                Prt {
                    addr: aml_int(&c[0]),
                    pin: aml_int(&c[1]),
                    source,
                    index,
                }
            })
            .collect(),
    )
}

/// bhyve's INTx routing (`pci_irq.c`): the k-th (slot, pin) to ask for an
/// interrupt, in slot order, gets PIRQ link k mod 8 (LNKA…LNKH) and I/O
/// APIC pin 16 + k mod 8. Returns the APIC-mode and PIC-mode `_PRT`s.
fn bhyve_prt(intx: &[(u8, u8)]) -> (Vec<Prt>, Vec<Prt>) {
    let (mut apic, mut pic) = (Vec::new(), Vec::new());
    for (k, &(slot, pin)) in intx.iter().enumerate() {
        let link = (k % 8) as u8;
        let addr = (u64::from(slot) << 16) | 0xffff;
        apic.push(Prt {
            addr,
            pin: pin.into(),
            source: String::new(),
            index: 16 + u64::from(link),
        });
        pic.push(Prt {
            addr,
            pin: pin.into(),
            source: format!("\\_SB.PC00.ISA.LNK{}", char::from(b'A' + link)),
            index: 0,
        });
    }
    (apic, pic)
}

/// The INTx pin (0 = INTA) a PCI emulation asks for, None when it uses
/// none. The test knows only the emulations it runs: a new device that
/// takes an INTx must be added here with its pin.
fn intx_pin(emulation: &str) -> Option<u8> {
    match emulation {
        "hostbridge" | "amd_hostbridge" | "lpc" => None,
        // Every virtio function asks for INTA (its Interrupt Pin reads 1).
        "virtio-rnd" => Some(0),
        other => panic!("teach bhyve_acpi.rs the INTx pin of '{other}'"),
    }
}

/// The DSDT the guest found: iasl disassembles it cleanly, it describes
/// PCI bus 0 and (with an LPC bridge) the eight PIRQ links, and its
/// `_PRT` is bhyve's routing for the functions `-s` configured.
fn check_dsdt(s: &Scratch, dsdt: &[u8], slots: &[(u8, &str)]) {
    let dsl = disassemble(&s.dir, dsdt);
    for needle in [
        "Method (_PIC, 1, NotSerialized)",
        "Device (PC00)",
        "EisaId (\"PNP0A03\")",
        "Name (_S5, Package",
    ] {
        assert!(dsl.contains(needle), "no '{needle}' in:\n{dsl}");
    }
    let lpc = slots.iter().find(|(_, e)| *e == "lpc");
    if let Some((slot, _)) = lpc {
        let adr = format!("Name (_ADR, 0x{:08X})", u32::from(*slot) << 16);
        assert!(dsl.contains("Device (ISA)") && dsl.contains(&adr), "{dsl}");
        for l in 'A'..='H' {
            assert!(
                dsl.contains(&format!("Device (LNK{l})")),
                "no LNK{l}:\n{dsl}"
            );
        }
    }
    let mut intx: Vec<(u8, u8)> = slots
        .iter()
        .filter_map(|&(slot, e)| intx_pin(e).map(|p| (slot, p)))
        .collect();
    intx.sort();
    let (apic, pic) = bhyve_prt(&intx);
    if intx.is_empty() {
        // bhyve writes no _PRT when no function uses INTx.
        assert!(!dsl.contains("_PRT"), "a _PRT without INTx users:\n{dsl}");
        return;
    }
    assert!(dsl.contains("Method (_PRT, 0, NotSerialized)"), "{dsl}");
    assert_eq!(prt_package(&dsl, "APRT"), Some(apic), "APRT in:\n{dsl}");
    let want_pic = if lpc.is_some() { pic } else { Vec::new() };
    assert_eq!(prt_package(&dsl, "PPRT"), Some(want_pic), "PPRT in:\n{dsl}");
}

/// `-s` arguments for `slots`.
fn slot_args(slots: &[(u8, &str)]) -> Vec<String> {
    slots
        .iter()
        .flat_map(|(slot, e)| ["-s".to_string(), format!("{slot},{e}")])
        .collect()
}

const HOSTBRIDGE_ID: u32 = 0x1275_1275;
const LPC_ID: u32 = 0x7000_8086;
const VIRTIO_RND_ID: u32 = 0x1005_1af4;

#[test]
fn tables_follow_cpus_and_pci_functions() {
    let s = Scratch::new("acpi-tables");
    // virtio-rnd takes an INTx, so the DSDT carries a _PRT for slot 4.
    let slots = [(0u8, "hostbridge"), (4, "virtio-rnd"), (31, "lpc")];
    for n in [1u32, 3] {
        let c = n.to_string();
        let extra = slot_args(&slots);
        let mut args = vec!["-A", "-c", &c];
        args.extend(extra.iter().map(String::as_str));
        let r = run(&s, &args, &format!("cpus={n}"));
        check_report(
            &r,
            n,
            0x400,
            &[(0, HOSTBRIDGE_ID), (4, VIRTIO_RND_ID), (31, LPC_ID)],
        );
        check_dsdt(&s, &r.dsdt, &slots);
    }
}

/// `pm.base` moves the PM block: the FADT follows it and the registers
/// answer at the new ports. One PCI function only, no LPC bridge.
#[test]
fn pm_base_moves_the_fadt_blocks() {
    let s = Scratch::new("acpi-pm-base");
    let slots = [(0u8, "amd_hostbridge")];
    let r = run(
        &s,
        &[
            "-A",
            "-c",
            "2",
            "-s",
            "0,amd_hostbridge",
            "-o",
            "pm.base=0x600",
        ],
        "cpus=2",
    );
    check_report(&r, 2, 0x600, &[(0, 0x7432_1022)]);
    check_dsdt(&s, &r.dsdt, &slots);
}

/// The guest's verdict can fail: a CPU count other than the MADT's, and
/// no tables at all without `-A`.
#[test]
fn guest_fails_on_wrong_cpus_or_missing_tables() {
    let s = Scratch::new("acpi-fail");
    let r = run(&s, &["-A", "-c", "3"], "cpus=2");
    assert_eq!(r.status, Some(exit_status(EXIT_FAIL)), "{}", r.raw);
    assert_eq!(
        r.lines.last().map(String::as_str),
        Some("acpi: MADT lists 0x3 enabled cpus, expected 0x2"),
        "{}",
        r.raw
    );
    let r = run(&s, &["-c", "2"], "cpus=2");
    assert_eq!(r.status, Some(exit_status(EXIT_FAIL)), "{}", r.raw);
    assert_eq!(r.lines, ["acpi: no RSDP"], "{}", r.raw);
}

/// The `_PRT` reader and bhyve's routing rule against a DSDT with INTx
/// users, built by the firmware crate and disassembled by iasl: the
/// guest runs above have one INTx user (virtio-rnd); this covers many,
/// and the wrap-around of the eight links.
#[test]
fn prt_reader_matches_bhyve_routing() {
    use bhyve_firmware::acpi::{self, AcpiSpec, PciRootSpec, PrtEntry};
    let s = Scratch::new("acpi-prt");
    // Ten INTx users: the ninth and tenth wrap around to LNKA/LNKB.
    let intx: Vec<(u8, u8)> = (0..10u8).map(|i| (3 + i / 2, i % 2)).collect();
    let mut pci = PciRootSpec::new();
    pci.lpc_slot = Some(31);
    pci.prt = intx
        .iter()
        .enumerate()
        .map(|(k, &(slot, pin))| PrtEntry {
            slot,
            pin,
            ioapic_pin: 16 + (k % 8) as u32,
            pirq: (k % 8) as u8,
        })
        .collect();
    let spec = AcpiSpec {
        pci: Some(pci),
        ..AcpiSpec::new(1)
    };
    let tables = acpi::build(&spec).unwrap();
    let dsl = disassemble(&s.dir, &tables.get(b"DSDT").unwrap().bytes);
    let (apic, pic) = bhyve_prt(&intx);
    assert_eq!(prt_package(&dsl, "APRT"), Some(apic));
    assert_eq!(prt_package(&dsl, "PPRT"), Some(pic));
    // A wrong expectation is noticed.
    let (mut other, _) = bhyve_prt(&intx);
    other[9].index = 16;
    assert_ne!(prt_package(&dsl, "APRT"), Some(other));
}
