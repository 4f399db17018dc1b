//! The PCI host bridge in the DSDT, as bhyve's `pci_bus_write_dsdt`,
//! `pci_lpc_write_dsdt` and `pirq_dsdt` describe it: `\_SB.PC00` with the
//! bus, I/O and memory windows it decodes, a `_PRT` that routes each
//! slot's INTx either to an I/O APIC pin (APIC mode, after the OS called
//! `\_PIC (1)`) or to one of the eight PIRQ links of the LPC bridge
//! (8259 mode), and the LPC bridge itself (`ISA`), whose PIRQ routing
//! registers (config offsets 0x60–0x63 and 0x68–0x6b, ICH style: bit 7
//! disables, bits 0–3 name the ISA IRQ) the link devices read and write.

use super::aml::{self, FieldUnit, ARG0, LOCAL0, NO_TARGET};
use super::resource::{irq_flags, ResourceTemplate};
use super::AcpiError;
use crate::mptable::IOAPIC_PINS;

/// bhyve's name for PCI bus 0's host bridge, and its LPC bridge.
pub const PCI_ROOT: &str = "\\_SB.PC00";
pub const ISA_BRIDGE: &str = "\\_SB.PC00.ISA";
/// Number of PIRQ links (LNKA..LNKH).
pub const PIRQ_LINKS: u8 = 8;
/// A PIRQ register: disabled, and the ISA IRQ it routes to.
pub const PIRQ_DIS: u8 = 0x80;
pub const PIRQ_IRQ: u8 = 0x0f;
/// The ISA IRQs a PIRQ may route to (bhyve's `PERMITTED_IRQS` 0xdef8):
/// not the timer, keyboard, cascade, RTC, FPU or primary IDE IRQs.
pub const PIRQ_PERMITTED_IRQS: [u8; 11] = [3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15];
/// Config space offsets of PIRQA–D and PIRQE–H in the LPC bridge.
pub const PIRQ_A_D: u8 = 0x60;
pub const PIRQ_E_H: u8 = 0x68;
/// Legacy VGA memory, which the host bridge passes to the PCI bus.
pub const VGA_WINDOW: (u32, u32) = (0xa_0000, 0xc_0000);
/// The config mechanism #1 ports, consumed by the host bridge itself.
pub const CONFIG_PORTS: (u16, u8) = (0xcf8, 8);
/// I/O ports the host bridge passes to the bus below its I/O window,
/// around the config ports (bhyve: 0–0xcf7 and 0xd00–window start).
const LOW_IO_SPLIT: (u16, u16) = (0xcf7, 0xd00);
const MAX_SLOT: u8 = 31;
const INTX_PINS: u8 = 4;

/// bus 0 of bhyve's PCI emulation, as ACPI describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciRootSpec {
    /// PCI Express enhanced configuration space (ECAM), 1 MiB per bus.
    pub ecam_base: u64,
    /// Buses 0..=ecam_end_bus (MCFG and the `_CRS` bus range).
    pub ecam_end_bus: u8,
    /// I/O port window for BARs: (base, end exclusive).
    pub io_window: (u16, u32),
    /// 32-bit memory window: (base, end exclusive).
    pub mem32_window: (u64, u64),
    /// 64-bit memory window: (base, end exclusive); empty: none.
    pub mem64_window: (u64, u64),
    /// Slot of the LPC bridge (function 0); None: no `ISA` device and no
    /// PIRQ links, and the legacy devices stay in `\_SB`.
    pub lpc_slot: Option<u8>,
    /// One entry per (slot, INTx pin) in use.
    pub prt: Vec<PrtEntry>,
}

impl PciRootSpec {
    /// bhyve's windows: ECAM at 0xe0000000 for 256 buses, I/O from
    /// 0x2000, 32-bit memory 0xc0000000–0xe0000000, 64-bit memory
    /// 32–64 GiB; no LPC bridge, no INTx yet.
    pub fn new() -> Self {
        PciRootSpec {
            ecam_base: 0xe000_0000,
            ecam_end_bus: 0xff,
            io_window: (0x2000, 0x1_0000),
            mem32_window: (0xc000_0000, 0xe000_0000),
            mem64_window: (32 << 30, 64 << 30),
            lpc_slot: None,
            prt: Vec::new(),
        }
    }
}

impl Default for PciRootSpec {
    fn default() -> Self {
        Self::new()
    }
}

/// One INTx routing: `pin` (0 = INTA … 3 = INTD) of `slot` goes to I/O
/// APIC input `ioapic_pin` (below [`IOAPIC_PINS`]) and to PIRQ link `pirq` (0 = LNKA … 7 = LNKH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrtEntry {
    pub slot: u8,
    pub pin: u8,
    pub ioapic_pin: u32,
    pub pirq: u8,
}

fn bad(what: String) -> AcpiError {
    AcpiError::BadPci(what)
}

/// Rejects windows and routes no PCI bridge could decode.
pub fn check(p: &PciRootSpec) -> Result<(), AcpiError> {
    if !p.ecam_base.is_multiple_of(1 << 20) {
        return Err(bad(format!(
            "ECAM base {:#x} not 1 MiB aligned",
            p.ecam_base
        )));
    }
    let (io_lo, io_hi) = p.io_window;
    if io_lo < LOW_IO_SPLIT.1 || u32::from(io_lo) >= io_hi || io_hi > 0x1_0000 {
        return Err(bad(format!("I/O window {io_lo:#x}-{io_hi:#x}")));
    }
    let (m_lo, m_hi) = p.mem32_window;
    if m_lo >= m_hi || m_hi > 1 << 32 {
        return Err(bad(format!("32-bit memory window {m_lo:#x}-{m_hi:#x}")));
    }
    let (q_lo, q_hi) = p.mem64_window;
    if q_lo > q_hi {
        return Err(bad(format!("64-bit memory window {q_lo:#x}-{q_hi:#x}")));
    }
    if let Some(s) = p.lpc_slot {
        if s > MAX_SLOT {
            return Err(bad(format!("LPC slot {s}")));
        }
    }
    for (i, e) in p.prt.iter().enumerate() {
        let dup = p.prt[..i]
            .iter()
            .any(|o| o.slot == e.slot && o.pin == e.pin);
        if e.slot > MAX_SLOT
            || e.pin >= INTX_PINS
            || e.pirq >= PIRQ_LINKS
            || e.ioapic_pin >= u32::from(IOAPIC_PINS)
            || dup
        {
            return Err(bad(format!(
                "INTx route slot {} pin {} PIRQ {} GSI {}",
                e.slot, e.pin, e.pirq, e.ioapic_pin
            )));
        }
    }
    Ok(())
}

/// `LNKA`…`LNKH` and the matching register names `PIRA`…`PIRH`.
fn link_letter(pirq: u8) -> char {
    char::from(b'A' + pirq)
}

/// The `Device (PC00)` term: `isa` are the devices of the LPC bridge
/// (used only when `lpc_slot` is set), `extra` more devices on the bus
/// (bhyve puts the HPET there).
pub fn pci_root(p: &PciRootSpec, isa: &[Vec<u8>], extra: &[Vec<u8>]) -> Result<Vec<u8>, AcpiError> {
    // No _ADR: a device has a _HID or an _ADR, not both (iasl warns),
    // and bhyve names the bridge by _HID; _BBN gives its bus.
    let mut body = aml::name("_HID", &aml::eisa_id("PNP0A03")?)?;
    body.extend(aml::name("_UID", &aml::int(0))?);
    body.extend(aml::name("_BBN", &aml::int(0))?);
    body.extend(aml::name("_CRS", &root_crs(p).build()?)?);
    if !p.prt.is_empty() {
        body.extend(prt(p)?);
    }
    if let Some(slot) = p.lpc_slot {
        body.extend(isa_bridge(slot, isa)?);
    }
    for term in extra {
        body.extend_from_slice(term);
    }
    aml::device("PC00", &body)
}

/// What bus 0 decodes: its buses, the config ports (consumed), the I/O
/// space below the window in two parts around them, the window, VGA
/// memory and both memory windows.
fn root_crs(p: &PciRootSpec) -> ResourceTemplate {
    let (io_lo, io_hi) = p.io_window;
    let mut crs = ResourceTemplate::new()
        .word_bus_number(0, p.ecam_end_bus.into())
        .io(CONFIG_PORTS.0, CONFIG_PORTS.1)
        .word_io(0, LOW_IO_SPLIT.0);
    if io_lo > LOW_IO_SPLIT.1 {
        crs = crs.word_io(LOW_IO_SPLIT.1, io_lo - 1);
    }
    // `check` keeps io_hi within 1..=0x10000, so io_hi - 1 fits 16 bits.
    crs = crs
        .word_io(io_lo, (io_hi - 1) as u16)
        .dword_memory(VGA_WINDOW.0, VGA_WINDOW.1 - 1)
        .dword_memory(p.mem32_window.0 as u32, (p.mem32_window.1 - 1) as u32);
    if p.mem64_window.1 > p.mem64_window.0 {
        crs = crs.qword_memory(p.mem64_window.0, p.mem64_window.1 - 1);
    }
    crs
}

/// `PPRT` (links), `APRT` (GSIs) and `_PRT` choosing by `\PICM`. A
/// `_PRT` address is `slot << 16 | 0xffff`: any function of the slot.
fn prt(p: &PciRootSpec) -> Result<Vec<u8>, AcpiError> {
    let addr = |e: &PrtEntry| aml::int((u64::from(e.slot) << 16) | 0xffff);
    let mut pic = Vec::new();
    let mut apic = Vec::new();
    for e in &p.prt {
        apic.push(aml::package(&[
            addr(e),
            aml::int(e.pin.into()),
            aml::int(0),
            aml::int(e.ioapic_pin.into()),
        ])?);
        // Without an LPC bridge there are no links: 8259 mode has no
        // route for this pin, as on bhyve.
        if p.lpc_slot.is_some() {
            let link = format!("{ISA_BRIDGE}.LNK{}", link_letter(e.pirq));
            pic.push(aml::package(&[
                addr(e),
                aml::int(e.pin.into()),
                aml::name_string(&link)?,
                aml::int(0),
            ])?);
        }
    }
    let mut out = aml::name("PPRT", &aml::package(&pic)?)?;
    out.extend(aml::name("APRT", &aml::package(&apic)?)?);
    let choose = [
        aml::if_(
            &aml::name_string("\\PICM")?,
            &aml::ret(&aml::name_string("APRT")?),
        )?,
        aml::else_(&aml::ret(&aml::name_string("PPRT")?))?,
    ]
    .concat();
    out.extend(aml::method("_PRT", 0, &choose)?);
    Ok(out)
}

/// `\PICM` and `\_PIC`: the OS says which interrupt model it uses (0
/// 8259, 1 APIC) before evaluating any `_PRT`.
pub fn pic_method() -> Result<Vec<u8>, AcpiError> {
    let mut out = aml::name("PICM", &aml::int(0))?;
    out.extend(aml::method(
        "_PIC",
        1,
        &aml::store(ARG0, &aml::name_string("PICM")?),
    )?);
    Ok(out)
}

/// `Device (ISA)`: the LPC bridge at `slot`, its PIRQ registers, the
/// links and the legacy devices behind it.
fn isa_bridge(slot: u8, devices: &[Vec<u8>]) -> Result<Vec<u8>, AcpiError> {
    let mut body = aml::name("_ADR", &aml::int(u64::from(slot) << 16))?;
    body.extend(aml::operation_region(
        "LPCR",
        aml::REGION_PCI_CONFIG,
        0,
        0x100,
    )?);
    let mut units = Vec::new();
    for (i, base) in [PIRQ_A_D, PIRQ_E_H].into_iter().enumerate() {
        units.push(FieldUnit::Offset(base.into()));
        for j in 0..4 {
            let letter = link_letter(i as u8 * 4 + j);
            units.push(FieldUnit::Named(format!("PIR{letter}"), 8));
        }
    }
    body.extend(aml::field("LPCR", aml::FIELD_ANY_NOLOCK_PRESERVE, &units)?);
    body.extend(pirv()?);
    for pirq in 0..PIRQ_LINKS {
        body.extend(link(pirq)?);
    }
    for d in devices {
        body.extend_from_slice(d);
    }
    aml::device("ISA", &body)
}

/// `PIRV (reg)`: One when a PIRQ register routes to a permitted IRQ
/// (the check bhyve's router applies before it asserts anything).
fn pirv() -> Result<Vec<u8>, AcpiError> {
    let zero = || aml::ret(&aml::int(0));
    let mut body = aml::if_(
        &aml::and(ARG0, &aml::int(PIRQ_DIS.into()), NO_TARGET),
        &zero(),
    )?;
    body.extend(aml::and(ARG0, &aml::int(PIRQ_IRQ.into()), LOCAL0));
    let lowest = PIRQ_PERMITTED_IRQS[0];
    body.extend(aml::if_(
        &aml::lless(LOCAL0, &aml::int(lowest.into())),
        &zero(),
    )?);
    for irq in lowest..=PIRQ_IRQ {
        if !PIRQ_PERMITTED_IRQS.contains(&irq) {
            body.extend(aml::if_(
                &aml::lequal(LOCAL0, &aml::int(irq.into())),
                &zero(),
            )?);
        }
    }
    body.extend(aml::ret(&aml::int(1)));
    aml::method("PIRV", 1, &body)
}

/// `Device (LNKx)`: PCI interrupt link `pirq` over register `PIRx`.
fn link(pirq: u8) -> Result<Vec<u8>, AcpiError> {
    let l = link_letter(pirq);
    let reg = aml::name_string(&format!("PIR{l}"))?;
    let cur = format!("CIR{l}");
    let buf = format!("CB{:02X}", pirq + 1);
    let mut body = aml::name("_HID", &aml::eisa_id("PNP0C0F")?)?;
    body.extend(aml::name("_UID", &aml::int(u64::from(pirq) + 1))?);
    // _STA: present and functioning; enabled only when routed.
    let sta = [
        aml::if_(&aml::call("PIRV", &[&reg])?, &aml::ret(&aml::int(0x0b)))?,
        aml::else_(&aml::ret(&aml::int(0x09)))?,
    ]
    .concat();
    body.extend(aml::method("_STA", 0, &sta)?);
    let prs = ResourceTemplate::new().irq(irq_flags::PCI_LINK, &PIRQ_PERMITTED_IRQS);
    body.extend(aml::name("_PRS", &prs.build()?)?);
    // _CRS patches the IRQ mask (bytes 1–2 of the IRQ descriptor) of a
    // template buffer.
    let empty = ResourceTemplate::new().irq(irq_flags::PCI_LINK, &[]);
    body.extend(aml::name(&buf, &empty.build()?)?);
    body.extend(aml::create_word_field(
        &aml::name_string(&buf)?,
        &aml::int(1),
        &cur,
    )?);
    let cur = aml::name_string(&cur)?;
    let crs = [
        aml::and(&reg, &aml::int((PIRQ_DIS | PIRQ_IRQ).into()), LOCAL0),
        aml::if_(
            &aml::call("PIRV", &[LOCAL0])?,
            &aml::shift_left(&aml::int(1), LOCAL0, &cur),
        )?,
        aml::else_(&aml::store(&aml::int(0), &cur))?,
        aml::ret(&aml::name_string(&buf)?),
    ]
    .concat();
    body.extend(aml::method("_CRS", 0, &crs)?);
    body.extend(aml::method(
        "_DIS",
        0,
        &aml::store(&aml::int(PIRQ_DIS.into()), &reg),
    )?);
    // _SRS: the lowest IRQ of the mask the OS picked; an empty mask
    // stores 0xff (disabled).
    let set = format!("SIR{l}");
    let srs = [
        aml::create_word_field(ARG0, &aml::int(1), &set)?,
        aml::find_set_right_bit(&aml::name_string(&set)?, LOCAL0),
        aml::store(&aml::decrement(LOCAL0), &reg),
    ]
    .concat();
    body.extend(aml::method("_SRS", 1, &srs)?);
    aml::device(&format!("LNK{l}"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn bad_specs_are_rejected() {
        let ok = PciRootSpec::new();
        assert_eq!(check(&ok), Ok(()));
        let cases: Vec<fn(&mut PciRootSpec)> = vec![
            |p| p.ecam_base = 0xe008_0000,
            |p| p.io_window = (0x100, 0x1000),
            |p| p.io_window = (0x2000, 0x2000),
            |p| p.io_window = (0x2000, 0x1_0001),
            |p| p.mem32_window = (0xc000_0000, 0x1_0000_0001),
            |p| p.mem32_window = (0xc000_0000, 0xc000_0000),
            |p| p.mem64_window = (2 << 30, 1 << 30),
            |p| p.lpc_slot = Some(32),
            |p| {
                p.prt.push(PrtEntry {
                    slot: 3,
                    pin: 0,
                    ioapic_pin: 24,
                    pirq: 0,
                });
            },
            |p| {
                p.prt.push(PrtEntry {
                    slot: 3,
                    pin: 4,
                    ioapic_pin: 16,
                    pirq: 0,
                });
            },
            |p| {
                p.prt.push(PrtEntry {
                    slot: 3,
                    pin: 0,
                    ioapic_pin: 16,
                    pirq: 8,
                });
            },
            |p| {
                let e = PrtEntry {
                    slot: 3,
                    pin: 0,
                    ioapic_pin: 16,
                    pirq: 0,
                };
                p.prt.extend([e, e]);
            },
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut p = PciRootSpec::new();
            f(&mut p);
            assert!(matches!(check(&p), Err(AcpiError::BadPci(_))), "case {i}");
        }
    }

    #[test]
    fn links_and_prt_follow_the_spec() {
        let mut p = PciRootSpec::new();
        p.lpc_slot = Some(31);
        p.prt = vec![
            PrtEntry {
                slot: 2,
                pin: 0,
                ioapic_pin: 16,
                pirq: 0,
            },
            PrtEntry {
                slot: 3,
                pin: 1,
                ioapic_pin: 17,
                pirq: 7,
            },
        ];
        let d = pci_root(&p, &[], &[]).unwrap();
        for name in [
            "LNKA", "LNKH", "PIRA", "PIRH", "PIRV", "PPRT", "APRT", "_PRT",
        ] {
            assert!(has(&d, name.as_bytes()), "{name}");
        }
        // ISA _ADR 0x1f0000.
        assert!(has(&d, b"\x08_ADR\x0c\x00\x00\x1f\x00"));
        // APRT {0x2ffff, 0, 0, 16}; PPRT's entry names \_SB.PC00.ISA.LNKH.
        assert!(has(&d, b"\x12\x0b\x04\x0c\xff\xff\x02\x00\x00\x00\x0a\x10"));
        assert!(has(&d, b"\\\x2f\x04_SB_PC00ISA_LNKH"));
        // No LPC bridge: no links, and the 8259 table is empty.
        p.lpc_slot = None;
        let d = pci_root(&p, &[], &[]).unwrap();
        assert!(!has(&d, b"LNKA") && !has(&d, b"ISA_"));
        assert!(has(&d, b"\x08PPRT\x12\x02\x00"));
        // No INTx at all: no _PRT.
        p.prt.clear();
        assert!(!has(&pci_root(&p, &[], &[]).unwrap(), b"_PRT"));
    }
}
