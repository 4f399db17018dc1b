//! The ACPI tables bhyve(8) writes into guest memory with `-A` (bhyve's
//! `acpi.c` and `basl.c`), generated here without iasl.
//!
//! Placement is bhyve's: the RSDP at [`ACPI_BASE`] (0xf2400, in the BIOS
//! area above the MP table, where a guest scanning 0xe0000–0xfffff finds
//! it), then each table in bhyve's order, 16-byte aligned (the FACS
//! 64-byte aligned): RSDT, XSDT, FADT, MADT, HPET, FACS, SPCR, DSDT. The
//! RSDT/XSDT list FADT first (UEFI asks for that), then MADT, HPET, SPCR.
//! With a PCI root ([`AcpiSpec::pci`]) an MCFG follows the HPET, in both
//! the placement and the lists, as in bhyve's `acpi_build`.
//!
//! [`build_at`] lays the same tables out anywhere: [`build`] places
//! them in the BIOS area, [`loader::fw_cfg_tables`] at offset 0 of QEMU's
//! fw_cfg files, with the pointer fields the firmware must relocate.
//!
//! [`AcpiSpec`] says what the tables describe; its defaults are bhyve's
//! fixed platform (PM block at 0x400, SCI 9, SMI command 0xb2, HPET at
//! 0xfed00000, reset through 0xcf9).

pub mod aml;
pub mod dsdt;
pub mod fadt;
pub mod hpet;
pub mod loader;
pub mod madt;
pub mod mcfg;
pub mod pci;
pub mod resource;
pub mod sdt;
pub mod spcr;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::mptable::{MAX_CPUS, MPTABLE_BASE, SCI_IRQ};
pub use loader::{fw_cfg_tables, FwCfgAcpi};
pub use pci::{PciRootSpec, PrtEntry};

/// Where the RSDP goes (bhyve's `BHYVE_ACPI_BASE`).
pub const ACPI_BASE: u64 = 0xf_2400;
/// The tables must end below 1 MiB (the BIOS area, e820-reserved).
pub const ACPI_LIMIT: u64 = 0x10_0000;
/// bhyve's table alignment, and the FACS's (ACPI requires 64).
pub const TABLE_ALIGN: u64 = 0x10;
pub const FACS_ALIGN: u64 = 0x40;
/// The ISA IRQ limit: COM IRQs go into 16-bit IRQ masks.
const ISA_IRQS: u8 = 16;

/// bhyve's PM register block (`pm.c`), SMI command port and GPE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmPorts {
    /// PM1a event block: status and enable, 2 bytes each.
    pub pm1a_evt: u16,
    /// PM1a control block, 2 bytes.
    pub pm1a_cnt: u16,
    /// 32-bit ACPI PM timer.
    pub pm_tmr: u16,
    /// GPE0 block `(base, length)`; None: no GPE block.
    pub gpe0: Option<(u16, u8)>,
    /// SMI command port and the values that switch ACPI mode on/off.
    pub smi_cmd: u16,
    pub acpi_enable: u8,
    pub acpi_disable: u8,
}

impl Default for PmPorts {
    fn default() -> Self {
        PmPorts {
            pm1a_evt: 0x400,
            pm1a_cnt: 0x404,
            pm_tmr: 0x408,
            gpe0: Some((0x40c, 2)),
            smi_cmd: 0xb2,
            acpi_enable: 0xa0,
            acpi_disable: 0xa1,
        }
    }
}

/// One COM port of the LPC bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComPort {
    /// 0 for COM1 … 3 for COM4 (the DSDT names it COM<index+1>).
    pub index: u8,
    pub base: u16,
    pub irq: u8,
}

/// The HPET's register block and its capabilities' low 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpetSpec {
    pub base: u32,
    /// Event Timer Block ID = General Capabilities bits 0–31.
    pub block_id: u32,
}

/// bhyve's HPET (vhpet.c): at 0xfed00000, vendor 0x8086, 8 timers
/// (field 7), revision 1, 32-bit counter, no legacy replacement route.
pub const BHYVE_HPET: HpetSpec = HpetSpec {
    base: 0xfed0_0000,
    block_id: 0x8086_0701,
};

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiSpec {
    pub cpus: usize,
    /// The COM ports that exist, in any order.
    pub com_ports: Vec<ComPort>,
    pub pm: PmPorts,
    /// The SCI's ISA IRQ (level-triggered, active-low).
    pub sci_irq: u8,
    pub hpet: Option<HpetSpec>,
    /// A CMOS RTC at 0x70 (IRQ 8) and its century register index.
    pub rtc: bool,
    pub rtc_century: u8,
    /// Reset register (I/O port) and the value that resets.
    pub reset: (u16, u8),
    /// SLP_TYP for S5 in PM1 control.
    pub s5_slp_typ: u8,
    /// The i8042 (bhyve's `atkbdc.c`, always there): `KBD` (PNP0303) and
    /// `MOU` (PNP0F13) on ports 0x60/0x64, IRQs 1 and 12.
    pub atkbdc: bool,
    /// bhyve's POST port (`post.c`), listed with the LPC bridge's
    /// system resources.
    pub post_port: Option<u16>,
    /// QEMU's fw_cfg `(base, length)`: `\_SB.FWCF` ("QEMU0002"), which
    /// Linux's qemu_fw_cfg driver binds to (bhyve's `qemu_fwcfg.c`).
    pub fw_cfg: Option<(u16, u8)>,
    /// More AML terms for `\_SB` (e.g. a PCI root bridge), encoded with
    /// [`aml`], appended after the built-in devices.
    pub sb_terms: Vec<Vec<u8>>,
    /// PCI bus 0 (`\_SB.PC00`, `_PRT`, PIRQ links, MCFG); None: no PCI
    /// in the tables.
    pub pci: Option<PciRootSpec>,
}

impl AcpiSpec {
    /// `cpus` processors and bhyve's platform; no COM ports.
    pub fn new(cpus: usize) -> Self {
        AcpiSpec {
            cpus,
            com_ports: Vec::new(),
            pm: PmPorts::default(),
            sci_irq: SCI_IRQ,
            hpet: Some(BHYVE_HPET),
            rtc: true,
            rtc_century: 0x32,
            reset: (0xcf9, 0x06),
            s5_slp_typ: 5,
            atkbdc: true,
            post_port: Some(0x84),
            fw_cfg: None,
            sb_terms: Vec::new(),
            pci: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("ACPI tables: {0} CPUs (must be 1 to {MAX_CPUS})")]
    CpuCount(usize),
    #[error("ACPI tables: invalid COM port {index} at {base:#x} IRQ {irq}")]
    BadCom { index: u8, base: u16, irq: u8 },
    #[error("ACPI tables: SCI IRQ {0} is not an ISA IRQ")]
    BadSci(u8),
    #[error("ACPI tables: invalid AML name or string '{0}'")]
    BadName(String),
    #[error("ACPI tables: {0} bytes do not fit in the BIOS area")]
    TooBig(usize),
    #[error("ACPI tables: invalid PCI root: {0}")]
    BadPci(String),
    #[error("ACPI tables: writing guest memory: {0}")]
    GuestMemory(String),
}

/// One table and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// "RSD PTR " is shortened to "RSDP".
    pub signature: [u8; 4],
    pub gpa: u64,
    pub bytes: Vec<u8>,
}

/// The tables of one VM, in placement order (RSDP first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub tables: Vec<Table>,
}

impl AcpiTables {
    /// The table with this signature ("RSDP" for the RSDP).
    pub fn get(&self, signature: &[u8; 4]) -> Option<&Table> {
        self.tables.iter().find(|t| &t.signature == signature)
    }

    /// First byte after the last table.
    pub fn end(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.gpa + t.bytes.len() as u64)
            .max()
            .unwrap_or(ACPI_BASE)
    }
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn check(spec: &AcpiSpec) -> Result<(), AcpiError> {
    if spec.cpus == 0 || spec.cpus > MAX_CPUS {
        return Err(AcpiError::CpuCount(spec.cpus));
    }
    if spec.sci_irq >= ISA_IRQS {
        return Err(AcpiError::BadSci(spec.sci_irq));
    }
    for (i, c) in spec.com_ports.iter().enumerate() {
        let dup = spec.com_ports[..i].iter().any(|o| o.index == c.index);
        if c.index > 3 || c.irq >= ISA_IRQS || dup {
            return Err(AcpiError::BadCom {
                index: c.index,
                base: c.base,
                irq: c.irq,
            });
        }
    }
    if let Some(p) = &spec.pci {
        pci::check(p)?;
    }
    Ok(())
}

/// A pointer inside a table to another table: `size` little-endian
/// bytes at `offset` of `table` hold the address of `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerField {
    pub table: [u8; 4],
    pub offset: usize,
    pub size: u8,
    pub target: [u8; 4],
}

/// Builds every table for `spec`, placed from [`ACPI_BASE`].
pub fn build(spec: &AcpiSpec) -> Result<AcpiTables, AcpiError> {
    let first = align_up(ACPI_BASE + sdt::RSDP_LEN as u64, TABLE_ALIGN);
    let (t, _) = layout(spec, ACPI_BASE, first)?;
    if t.end() > ACPI_LIMIT {
        return Err(AcpiError::TooBig((t.end() - ACPI_BASE) as usize));
    }
    Ok(t)
}

/// Builds every table for `spec` with the RSDP at `rsdp_at` and the
/// other tables from `tables_at` on (each aligned as in [`build`]); the
/// tables must end below 4 GiB (the RSDT and FADT hold 32-bit pointers).
pub fn build_at(spec: &AcpiSpec, rsdp_at: u64, tables_at: u64) -> Result<AcpiTables, AcpiError> {
    Ok(layout(spec, rsdp_at, tables_at)?.0)
}

/// The tables and every pointer field in them.
pub(crate) fn layout(
    spec: &AcpiSpec,
    rsdp_at: u64,
    tables_at: u64,
) -> Result<(AcpiTables, Vec<PointerField>), AcpiError> {
    check(spec)?;
    // Tables that point nowhere come first, so that their lengths fix
    // every address before the pointer tables are written.
    let madt = madt::madt(spec.cpus, spec.sci_irq);
    let hpet = spec.hpet.as_ref().map(hpet::hpet);
    let mcfg = spec.pci.as_ref().map(mcfg::mcfg);
    let com1 = spec.com_ports.iter().find(|c| c.index == 0);
    let spcr = com1.map(spcr::spcr);
    let facs = fadt::facs();
    let dsdt = dsdt::dsdt(spec)?;

    // FADT, MADT, HPET, MCFG, SPCR: the order of the RSDT/XSDT entries.
    let mut listed: Vec<[u8; 4]> = vec![*b"FACP", *b"APIC"];
    for (sig, present) in [
        (b"HPET", hpet.is_some()),
        (b"MCFG", mcfg.is_some()),
        (b"SPCR", spcr.is_some()),
    ] {
        if present {
            listed.push(*sig);
        }
    }
    let mut plan: Vec<([u8; 4], usize, u64)> = vec![
        (*b"RSDT", sdt::rsdt_len(listed.len()), TABLE_ALIGN),
        (*b"XSDT", sdt::xsdt_len(listed.len()), TABLE_ALIGN),
        (*b"FACP", fadt::FADT_LEN, TABLE_ALIGN),
        (*b"APIC", madt.len(), TABLE_ALIGN),
    ];
    if let Some(h) = &hpet {
        plan.push((*b"HPET", h.len(), TABLE_ALIGN));
    }
    if let Some(m) = &mcfg {
        plan.push((*b"MCFG", m.len(), TABLE_ALIGN));
    }
    plan.push((*b"FACS", facs.len(), FACS_ALIGN));
    if let Some(s) = &spcr {
        plan.push((*b"SPCR", s.len(), TABLE_ALIGN));
    }
    plan.push((*b"DSDT", dsdt.len(), TABLE_ALIGN));

    let mut addr = tables_at;
    let mut placed = vec![(*b"RSDP", rsdp_at)];
    for (sig, len, align) in plan {
        let at = align_up(addr, align);
        addr = at + len as u64;
        placed.push((sig, at));
    }
    if addr > 1 << 32 || rsdp_at > u64::from(u32::MAX) {
        return Err(AcpiError::TooBig((addr - tables_at) as usize));
    }
    let at = |sig: &[u8; 4]| {
        placed
            .iter()
            .find(|(s, _)| s == sig)
            .map(|(_, a)| *a)
            .unwrap_or(0)
    };

    let entries: Vec<u64> = listed.iter().map(at).collect();
    let tables = placed
        .iter()
        .map(|(sig, gpa)| {
            let bytes = match sig {
                b"RSDP" => sdt::rsdp(at(b"RSDT") as u32, at(b"XSDT")),
                b"RSDT" => sdt::rsdt(&entries),
                b"XSDT" => sdt::xsdt(&entries),
                b"FACP" => fadt::fadt(spec, at(b"FACS"), at(b"DSDT")),
                b"APIC" => madt.clone(),
                b"HPET" => hpet.clone().unwrap_or_default(),
                b"MCFG" => mcfg.clone().unwrap_or_default(),
                b"FACS" => facs.clone(),
                b"SPCR" => spcr.clone().unwrap_or_default(),
                _ => dsdt.clone(),
            };
            Table {
                signature: *sig,
                gpa: *gpa,
                bytes,
            }
        })
        .collect();

    let p = |table: &[u8; 4], offset: usize, size: u8, target: &[u8; 4]| PointerField {
        table: *table,
        offset,
        size,
        target: *target,
    };
    let mut pointers = vec![
        p(b"RSDP", sdt::RSDP_RSDT_OFFSET, 4, b"RSDT"),
        p(b"RSDP", sdt::RSDP_XSDT_OFFSET, 8, b"XSDT"),
    ];
    for (i, sig) in listed.iter().enumerate() {
        pointers.push(p(b"RSDT", sdt::HEADER_LEN + 4 * i, 4, sig));
        pointers.push(p(b"XSDT", sdt::HEADER_LEN + 8 * i, 8, sig));
    }
    pointers.extend([
        p(b"FACP", fadt::off::FIRMWARE_CTRL, 4, b"FACS"),
        p(b"FACP", fadt::off::DSDT, 4, b"DSDT"),
        p(b"FACP", fadt::off::X_FIRMWARE_CTRL, 8, b"FACS"),
        p(b"FACP", fadt::off::X_DSDT, 8, b"DSDT"),
    ]);
    Ok((AcpiTables { tables }, pointers))
}

/// Builds the tables for `spec` and writes them into guest memory;
/// returns the RSDP's address.
pub fn write<M: GuestMemoryBackend>(mem: &M, spec: &AcpiSpec) -> Result<u64, AcpiError> {
    let t = build(spec)?;
    for table in &t.tables {
        mem.write_slice(&table.bytes, GuestAddress(table.gpa))
            .map_err(|e| AcpiError::GuestMemory(format!("{:#x}: {e}", table.gpa)))?;
    }
    Ok(ACPI_BASE)
}

/// The MP table ends below this (checked by the tests against
/// `mptable::build`'s worst case).
pub const MPTABLE_ROOM: u64 = ACPI_BASE - MPTABLE_BASE;

#[cfg(test)]
mod iasl_tests;
#[cfg(test)]
mod tests_support {
    use super::*;

    /// bhyve's PC platform: LPC bridge in slot 31, three devices with
    /// INTx, one sharing a PIRQ link.
    pub fn pci_spec(cpus: usize) -> AcpiSpec {
        let e = |slot, pin, ioapic_pin, pirq| PrtEntry {
            slot,
            pin,
            ioapic_pin,
            pirq,
        };
        let pci = PciRootSpec {
            lpc_slot: Some(31),
            prt: vec![e(3, 0, 16, 0), e(4, 0, 17, 1), e(5, 1, 18, 0)],
            ..PciRootSpec::new()
        };
        AcpiSpec {
            pci: Some(pci),
            ..AcpiSpec::new(cpus)
        }
    }
}
#[cfg(test)]
mod tests;
