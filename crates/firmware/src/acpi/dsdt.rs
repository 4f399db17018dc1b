//! The DSDT: `\_S5` (soft-off, so the guest can power off through PM1
//! control) and the devices of bhyve's LPC bridge, in `\_SB`: system
//! resources (PM block, SMI command, POST port), COM ports, RTC, PIC, PIT,
//! the i8042's keyboard and mouse; QEMU's fw_cfg device `\_SB.FWCF` when
//! it is in use.
//!
//! With a PCI root ([`super::AcpiSpec::pci`]) the layout is bhyve's:
//! `\_SB.PC00` (see [`super::pci`]) holds the HPET and the LPC bridge
//! `ISA`, which holds the legacy devices. Without one they sit directly
//! in `\_SB`, which Linux and FreeBSD enumerate the same way.

use super::aml::{self, ResourceTemplate};
use super::sdt::{finish, header};
use super::{pci, AcpiError, AcpiSpec};

/// DSDT revision 2: 64-bit AML integers.
pub const DSDT_REVISION: u8 = 2;
/// Length of the HPET's register block in `_CRS` (bhyve's 0x400).
pub const HPET_MMIO_LEN: u32 = 0x400;
/// The 8259 pair, the 8254 and the CMOS RTC: fixed ISA resources.
pub const PIC_PORTS: [(u16, u8); 2] = [(0x20, 2), (0xa0, 2)];
pub const PIC_CASCADE_IRQ: u8 = 2;
pub const PIT_PORT: (u16, u8) = (0x40, 4);
pub const PIT_IRQ: u8 = 0;
pub const RTC_PORT: (u16, u8) = (0x70, 2);
pub const RTC_IRQ: u8 = 8;
/// A 16550's register block.
pub const UART_PORTS: u8 = 8;
/// The i8042's data and status/command ports and its two IRQs.
pub const KBD_PORTS: [u16; 2] = [0x60, 0x64];
pub const KBD_IRQ: u8 = 1;
pub const MOUSE_IRQ: u8 = 12;
/// QEMU fw_cfg's ACPI identity and status (present, enabled, shown,
/// functioning: bhyve's `acpi_device.c` value).
pub const FW_CFG_HID: &str = "QEMU0002";
pub const FW_CFG_STA: u64 = 0x0f;

/// DSDT contents: named objects at the root and devices in `\_SB`.
#[derive(Debug, Clone, Default)]
pub struct Dsdt {
    root: Vec<Vec<u8>>,
    sb: Vec<Vec<u8>>,
}

impl Dsdt {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a term (already encoded) at the namespace root.
    pub fn push_root(&mut self, term: Vec<u8>) {
        self.root.push(term);
    }

    /// Appends a term (usually a `Device`) to `\_SB`.
    pub fn push_sb(&mut self, term: Vec<u8>) {
        self.sb.push(term);
    }

    /// A `Device (name) { _HID, [_UID], _CRS }` in `\_SB`.
    pub fn add_device(
        &mut self,
        name: &str,
        hid: &str,
        uid: Option<u64>,
        crs: ResourceTemplate,
    ) -> Result<(), AcpiError> {
        self.sb.push(device_term(name, hid, uid, crs)?);
        Ok(())
    }

    /// The complete table.
    pub fn build(&self) -> Result<Vec<u8>, AcpiError> {
        let mut t = header(b"DSDT", DSDT_REVISION);
        for term in &self.root {
            t.extend_from_slice(term);
        }
        if !self.sb.is_empty() {
            t.extend(aml::scope("_SB", &self.sb.concat())?);
        }
        if t.len() > u32::MAX as usize {
            return Err(AcpiError::TooBig(t.len()));
        }
        Ok(finish(t))
    }
}

/// `Device (name) { _HID, [_UID], _CRS }`.
pub fn device_term(
    name: &str,
    hid: &str,
    uid: Option<u64>,
    crs: ResourceTemplate,
) -> Result<Vec<u8>, AcpiError> {
    let mut body = aml::name("_HID", &aml::eisa_id(hid)?)?;
    if let Some(uid) = uid {
        body.extend(aml::name("_UID", &aml::int(uid))?);
    }
    body.extend(aml::name("_CRS", &crs.build()?)?);
    aml::device(name, &body)
}

/// What bhyve's LPC bridge describes: system resources it decodes (so
/// the OS allocates nothing over them), the COM ports, RTC, PIC and PIT.
fn lpc_devices(spec: &AcpiSpec) -> Result<Vec<Vec<u8>>, AcpiError> {
    let pm = &spec.pm;
    let mut sysres = ResourceTemplate::new()
        .io(pm.pm1a_evt, super::fadt::PM1_EVT_LEN)
        .io(pm.pm1a_cnt, super::fadt::PM1_CNT_LEN)
        .io(pm.pm_tmr, super::fadt::PM_TMR_LEN);
    if let Some((base, len)) = pm.gpe0 {
        sysres = sysres.io(base, len);
    }
    sysres = sysres.io(pm.smi_cmd, 1);
    if let Some(port) = spec.post_port {
        sysres = sysres.io(port, 1);
    }
    let mut out = vec![device_term("SIO", "PNP0C02", None, sysres)?];

    for c in &spec.com_ports {
        let name = format!("COM{}", c.index + 1);
        let crs = ResourceTemplate::new()
            .io(c.base, UART_PORTS)
            .irq_no_flags(c.irq);
        out.push(device_term(
            &name,
            "PNP0501",
            Some(u64::from(c.index) + 1),
            crs,
        )?);
    }
    if spec.rtc {
        let crs = ResourceTemplate::new()
            .io(RTC_PORT.0, RTC_PORT.1)
            .irq_no_flags(RTC_IRQ);
        out.push(device_term("RTC", "PNP0B00", None, crs)?);
    }
    let pic = ResourceTemplate::new()
        .io(PIC_PORTS[0].0, PIC_PORTS[0].1)
        .io(PIC_PORTS[1].0, PIC_PORTS[1].1)
        .irq_no_flags(PIC_CASCADE_IRQ);
    out.push(device_term("PIC", "PNP0000", None, pic)?);
    let pit = ResourceTemplate::new()
        .io(PIT_PORT.0, PIT_PORT.1)
        .irq_no_flags(PIT_IRQ);
    out.push(device_term("TIMR", "PNP0100", None, pit)?);
    if spec.atkbdc {
        // bhyve's atkbdc_dsdt: both devices name both ports.
        for (name, hid, irq) in [("KBD", "PNP0303", KBD_IRQ), ("MOU", "PNP0F13", MOUSE_IRQ)] {
            let crs = ResourceTemplate::new()
                .io(KBD_PORTS[0], 1)
                .io(KBD_PORTS[1], 1)
                .irq_no_flags(irq);
            out.push(device_term(name, hid, None, crs)?);
        }
    }
    Ok(out)
}

/// `\_SB.FWCF`: QEMU's fw_cfg, with a string _HID as QEMU and bhyve
/// write it.
fn fw_cfg_device(base: u16, len: u8) -> Result<Vec<u8>, AcpiError> {
    let mut body = aml::name("_HID", &aml::string(FW_CFG_HID)?)?;
    body.extend(aml::name("_STA", &aml::int(FW_CFG_STA))?);
    let crs = ResourceTemplate::new().io(base, len);
    body.extend(aml::name("_CRS", &crs.build()?)?);
    aml::device("FWCF", &body)
}

/// bhyve's DSDT for `spec`. Without PCI the legacy devices and the HPET
/// sit in `\_SB`; with PCI the HPET moves into `\_SB.PC00` and, when
/// there is an LPC bridge, the legacy devices into `\_SB.PC00.ISA`.
pub fn dsdt(spec: &AcpiSpec) -> Result<Vec<u8>, AcpiError> {
    let mut d = Dsdt::new();
    // \_S5: SLP_TYPa, SLP_TYPb for soft-off; bhyve's PM1 control decodes 5.
    d.push_root(aml::name(
        "_S5",
        &aml::package(&[aml::int(spec.s5_slp_typ.into()), aml::int(0)])?,
    )?);

    let legacy = lpc_devices(spec)?;
    let hpet = match &spec.hpet {
        Some(h) => {
            let crs = ResourceTemplate::new().memory32_fixed(h.base, HPET_MMIO_LEN);
            vec![device_term("HPET", "PNP0103", Some(0), crs)?]
        }
        None => Vec::new(),
    };
    match &spec.pci {
        None => {
            legacy.into_iter().chain(hpet).for_each(|t| d.push_sb(t));
        }
        Some(p) => {
            d.push_root(pci::pic_method()?);
            if p.lpc_slot.is_some() {
                d.push_sb(pci::pci_root(p, &legacy, &hpet)?);
            } else {
                legacy.into_iter().for_each(|t| d.push_sb(t));
                d.push_sb(pci::pci_root(p, &[], &hpet)?);
            }
        }
    }
    if let Some((base, len)) = spec.fw_cfg {
        d.push_sb(fw_cfg_device(base, len)?);
    }
    for term in &spec.sb_terms {
        d.push_sb(term.clone());
    }
    d.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(d: &[u8], needle: &[u8]) -> bool {
        d.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn i8042_post_and_fw_cfg_follow_the_spec() {
        let d = dsdt(&AcpiSpec::new(1)).unwrap();
        assert!(has(&d, b"KBD_") && has(&d, b"MOU_"));
        // IO (Decode16, 0x84, 0x84, 1, 1) in the system resources.
        assert!(has(&d, &[0x47, 0x01, 0x84, 0x00, 0x84, 0x00, 0x01, 0x01]));
        assert!(!has(&d, b"FWCF"));
        let d = dsdt(&AcpiSpec {
            atkbdc: false,
            post_port: None,
            fw_cfg: Some((0x510, 12)),
            ..AcpiSpec::new(1)
        })
        .unwrap();
        assert!(!has(&d, b"KBD_") && !has(&d, b"MOU_"));
        assert!(!has(&d, &[0x47, 0x01, 0x84, 0x00]));
        assert!(has(&d, b"FWCF") && has(&d, b"QEMU0002\0"));
        assert!(has(&d, &[0x47, 0x01, 0x10, 0x05, 0x10, 0x05, 0x01, 0x0c]));
    }
}
