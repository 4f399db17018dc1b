//! The tables through ACPICA's own disassembler (`iasl -d`), the tool
//! bhyve itself uses: every table must disassemble without an error or
//! warning and decode to the values we meant.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("bhyve-acpi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Disassembles `bytes` with iasl and returns the .dsl text.
fn disassemble(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, bytes).unwrap();
    let out = match Command::new("iasl")
        .arg("-d")
        .arg(&dat)
        .current_dir(dir)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            panic!("cannot run iasl ({e}): install acpica-tools (apt-get install -y acpica-tools)")
        }
    };
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl -d {name} failed:\n{log}");
    for bad in ["Error", "Warning", "Invalid", "Incorrect", "mismatch"] {
        assert!(!log.contains(bad), "iasl -d {name}: {bad}:\n{log}");
    }
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl")))
        .unwrap_or_else(|e| panic!("iasl wrote no {name}.dsl ({e}):\n{log}"));
    for bad in ["****", "Invalid", "Incorrect", "Unknown", "should be"] {
        assert!(!dsl.contains(bad), "{name}.dsl has '{bad}':\n{dsl}");
    }
    dsl
}

/// `Label : value` lines of a data-table disassembly, whitespace-free.
fn has_field(dsl: &str, label: &str, value: &str) -> bool {
    dsl.lines().any(|l| {
        let l: String = l.split_whitespace().collect::<Vec<_>>().join(" ");
        l.contains(&format!("{label} : {value}"))
    })
}

fn assert_field(dsl: &str, name: &str, label: &str, value: &str) {
    assert!(
        has_field(dsl, label, value),
        "{name}: no '{label} : {value}' in:\n{dsl}"
    );
}

fn coms() -> Vec<ComPort> {
    vec![
        ComPort {
            index: 0,
            base: 0x3f8,
            irq: 4,
        },
        ComPort {
            index: 1,
            base: 0x2f8,
            irq: 3,
        },
    ]
}

#[test]
fn iasl_disassembles_every_table() {
    let dir = TempDir::new("iasl");
    for cpus in [1, 16] {
        let spec = AcpiSpec {
            com_ports: coms(),
            ..AcpiSpec::new(cpus)
        };
        let t = build(&spec).unwrap();
        for table in &t.tables {
            // iasl (20200925) reads only tables with a standard header
            // from a file, and the RSDP has none; the unit tests decode
            // it (checksums, length, pointers).
            if &table.signature == b"RSDP" {
                continue;
            }
            let name = format!(
                "{}{cpus}",
                String::from_utf8_lossy(&table.signature).to_lowercase()
            );
            let dsl = disassemble(&dir.0, &name, &table.bytes);
            let n = name.as_str();
            match &table.signature {
                b"XSDT" => {
                    let facp = format!("{:016X}", t.get(b"FACP").unwrap().gpa);
                    assert_field(&dsl, n, "ACPI Table Address 0", &facp);
                }
                b"FACP" => {
                    assert_field(&dsl, n, "SCI Interrupt", "0009");
                    assert_field(&dsl, n, "SMI Command Port", "000000B2");
                    assert_field(&dsl, n, "ACPI Enable Value", "A0");
                    assert_field(&dsl, n, "PM1A Event Block Address", "00000400");
                    assert_field(&dsl, n, "PM1A Control Block Address", "00000404");
                    assert_field(&dsl, n, "PM Timer Block Address", "00000408");
                    assert_field(&dsl, n, "32-bit PM Timer (V1)", "1");
                    assert_field(&dsl, n, "Reset Register Supported (V2)", "1");
                    assert_field(&dsl, n, "Control Method Power Button (V1)", "0");
                    assert_field(&dsl, n, "Value to cause reset", "06");
                    assert_field(&dsl, n, "Address", "0000000000000CF9");
                    let dsdt = format!("{:08X}", t.get(b"DSDT").unwrap().gpa);
                    assert_field(&dsl, n, "DSDT Address", &dsdt);
                }
                b"APIC" => {
                    let lapics = dsl.matches("Processor Local APIC").count();
                    assert_eq!(lapics, cpus, "{n}:\n{dsl}");
                    assert_field(&dsl, n, "Local Apic ID", &format!("{:02X}", cpus - 1));
                    assert_field(&dsl, n, "Address", "FEC00000");
                    assert_field(&dsl, n, "Interrupt", "00000002");
                    assert_field(&dsl, n, "Interrupt Input LINT", "01");
                }
                b"HPET" => {
                    assert_field(&dsl, n, "Address", "00000000FED00000");
                    assert_field(&dsl, n, "Hardware Block ID", "80860701");
                }
                b"SPCR" => assert_field(&dsl, n, "Address", "00000000000003F8"),
                b"DSDT" => {
                    for needle in [
                        "Name (_S5, Package (0x02)",
                        "Device (COM1)",
                        "Device (COM2)",
                        "EisaId (\"PNP0501\")",
                        "0x03F8,",
                        "0x02F8,",
                        "IRQNoFlags ()",
                        "{4}",
                        "{3}",
                        "Device (RTC)",
                        "EisaId (\"PNP0B00\")",
                        "{8}",
                        "Device (HPET)",
                        "EisaId (\"PNP0103\")",
                        "0xFED00000",
                        "EisaId (\"PNP0C02\")",
                        "0x0400,",
                        "0x0408,",
                    ] {
                        assert!(dsl.contains(needle), "{n}: no '{needle}' in:\n{dsl}");
                    }
                }
                _ => {}
            }
        }
    }
}

/// iasl's disassembly compiles back to the same AML: the encoder made
/// nothing iasl had to guess about.
fn assert_recompiles_identically(tag: &str, spec: &AcpiSpec) {
    let dir = TempDir::new(tag);
    let t = build(spec).unwrap();
    let ours = &t.get(b"DSDT").unwrap().bytes;
    disassemble(&dir.0, "dsdt", ours);
    let out = Command::new("iasl")
        // -oa: no optimizations, so iasl keeps our name paths (it would
        // shorten `\_SB.PC00.ISA.LNKA` to a relative path).
        .args(["-oa", "-p", "again", "dsdt.dsl"])
        .current_dir(&dir.0)
        .output()
        .expect("iasl: install acpica-tools");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(" 0 Warnings"), "{log}");
    let again = std::fs::read(dir.0.join("again.aml")).unwrap();
    // The header's creator fields name the compiler; the body must match.
    assert_eq!(again.len(), ours.len());
    assert_eq!(&again[36..], &ours[36..]);
}

#[test]
fn iasl_recompiles_the_dsdt_identically() {
    let spec = AcpiSpec {
        com_ports: coms(),
        ..AcpiSpec::new(2)
    };
    assert_recompiles_identically("iasl-rt", &spec);
}

#[test]
fn iasl_recompiles_the_pci_dsdt_identically() {
    assert_recompiles_identically("iasl-rt-pci", &pci_spec_with_coms(2));
    let mut no_lpc = pci_spec_with_coms(1);
    if let Some(p) = no_lpc.pci.as_mut() {
        p.lpc_slot = None;
    }
    assert_recompiles_identically("iasl-rt-nolpc", &no_lpc);
}

fn pci_spec_with_coms(cpus: usize) -> AcpiSpec {
    AcpiSpec {
        com_ports: coms(),
        ..super::tests_support::pci_spec(cpus)
    }
}

/// With a PCI root: the DSDT has bhyve's PC00/ISA layout and the MCFG
/// and XSDT say what we meant.
#[test]
fn iasl_disassembles_the_pci_tables() {
    let dir = TempDir::new("iasl-pci");
    let t = build(&pci_spec_with_coms(2)).unwrap();
    let mut seen = Vec::new();
    for x in &t.tables[1..] {
        let n = String::from_utf8_lossy(&x.signature).to_lowercase();
        let dsl = disassemble(&dir.0, &n, &x.bytes);
        match &x.signature {
            b"MCFG" => {
                assert_field(&dsl, &n, "Base Address", "00000000E0000000");
                assert_field(&dsl, &n, "Segment Group Number", "0000");
                assert_field(&dsl, &n, "Start Bus Number", "00");
                assert_field(&dsl, &n, "End Bus Number", "FF");
            }
            b"XSDT" => {
                // FADT, MADT, HPET, MCFG, SPCR: bhyve's order.
                for (i, sig) in [b"FACP", b"APIC", b"HPET", b"MCFG", b"SPCR"]
                    .iter()
                    .enumerate()
                {
                    let a = format!("{:016X}", t.get(sig).unwrap().gpa);
                    assert_field(&dsl, &n, &format!("ACPI Table Address {i}"), &a);
                }
            }
            b"DSDT" => {
                let needles = [
                    "Name (PICM, Zero)",
                    "Method (_PIC, 1, NotSerialized)",
                    "PICM = Arg0",
                    "Device (PC00)",
                    "EisaId (\"PNP0A03\")",
                    "Name (_BBN, Zero)",
                    "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
                    "0x00FF,             // Range Maximum",
                    "0x0CF7,             // Range Maximum",
                    "0x0D00,             // Range Minimum",
                    "0x1FFF,             // Range Maximum",
                    "0x2000,             // Range Minimum",
                    "0xFFFF,             // Range Maximum",
                    "0x000A0000,         // Range Minimum",
                    "0xC0000000,         // Range Minimum",
                    "0xDFFFFFFF,         // Range Maximum",
                    "0x0000000800000000, // Range Minimum",
                    "0x0000000FFFFFFFFF, // Range Maximum",
                    "Method (_PRT, 0, NotSerialized)",
                    "If (\\PICM)",
                    "Return (APRT)",
                    "Return (PPRT)",
                    "\\_SB.PC00.ISA.LNKA,",
                    "\\_SB.PC00.ISA.LNKB,",
                    "0x0005FFFF,",
                    "0x12\n",
                    "Device (ISA)",
                    "Name (_ADR, 0x001F0000)",
                    "OperationRegion (LPCR, PCI_Config, Zero, 0x0100)",
                    "Offset (0x60),",
                    "Offset (0x68),",
                    "PIRH,   8",
                    "Method (PIRV, 1, NotSerialized)",
                    "Device (LNKA)",
                    "Device (LNKH)",
                    "EisaId (\"PNP0C0F\")",
                    "IRQ (Level, ActiveLow, Shared, )",
                    "{3,4,5,6,7,9,10,11,12,14,15}",
                    "CreateWordField (CB08, One, CIRH)",
                    "CIRA = (One << Local0)",
                    "PIRH = 0x80",
                    "FindSetRightBit (SIRA, Local0)",
                    "PIRA = Local0--",
                ];
                for needle in needles {
                    assert!(dsl.contains(needle), "no '{needle}' in:\n{dsl}");
                }
                // The legacy devices sit in ISA, the HPET in PC00: each
                // is indented one level deeper than its parent.
                for (dev, depth) in [
                    ("PC00", 8),
                    ("ISA", 12),
                    ("LNKA", 16),
                    ("COM1", 16),
                    ("RTC", 16),
                    ("PIC", 16),
                    ("TIMR", 16),
                    ("SIO", 16),
                    ("HPET", 12),
                ] {
                    let line = format!("\n{}Device ({dev})\n", " ".repeat(depth));
                    assert!(dsl.contains(&line), "{dev} not at depth {depth}:\n{dsl}");
                }
            }
            _ => {}
        }
        seen.push(x.signature);
    }
    assert!(seen.contains(b"MCFG") && seen.contains(b"DSDT"));
}

/// The i8042 devices and the POST port (always) and QEMU's fw_cfg device
/// (with `lpc.fwcfg=qemu`) disassemble to bhyve's ASL and compile back
/// to the same AML.
#[test]
fn iasl_reads_the_kbd_mouse_post_and_fw_cfg_devices() {
    let dir = TempDir::new("iasl-kbd-fwcf");
    let spec = AcpiSpec {
        fw_cfg: Some((0x510, 12)),
        ..pci_spec_with_coms(1)
    };
    let t = build(&spec).unwrap();
    let dsl = disassemble(&dir.0, "dsdt", &t.get(b"DSDT").unwrap().bytes);
    for needle in [
        "Device (KBD)",
        "EisaId (\"PNP0303\")",
        "Device (MOU)",
        "EisaId (\"PNP0F13\")",
        "0x0060,             // Range Minimum",
        "0x0064,             // Range Minimum",
        "IRQNoFlags ()\n                            {1}\n",
        "IRQNoFlags ()\n                            {12}\n",
        "0x0084,             // Range Minimum",
        "Device (FWCF)",
        "Name (_HID, \"QEMU0002\")",
        "Name (_STA, 0x0F)",
        "0x0510,             // Range Minimum",
        "0x0C,               // Length",
    ] {
        assert!(dsl.contains(needle), "no '{needle}' in:\n{dsl}");
    }
    // The keyboard and mouse with the other LPC devices, FWCF in \_SB.
    for (dev, depth) in [("KBD", 16), ("MOU", 16), ("FWCF", 8)] {
        let line = format!("\n{}Device ({dev})\n", " ".repeat(depth));
        assert!(dsl.contains(&line), "{dev} not at depth {depth}:\n{dsl}");
    }
    assert_recompiles_identically("iasl-rt-fwcf", &spec);
    let plain = build(&pci_spec_with_coms(1)).unwrap();
    let d = &plain.get(b"DSDT").unwrap().bytes;
    assert!(
        !d.windows(4).any(|w| w == b"FWCF"),
        "no FWCF without fw_cfg"
    );
}
