//! The firmware tables of a run and how the guest finds them: bhyve's way
//! (MP table, SMBIOS and ACPI tables written into the BIOS area at every
//! start) and QEMU's (the same tables, the e820 map and user files served
//! through fw_cfg, for firmware built for QEMU: `lpc.fwcfg=qemu`).

use std::sync::{Arc, Mutex};

use bhyve_config::FwCfgUserFile;
use bhyve_devices::fw_cfg::{self, FwCfg, FwCfgBuilder, FW_CFG_MAX_CPUS, FW_CFG_NB_CPUS};
use bhyve_devices::pci::intx::IntxRoute;
use bhyve_devices::pci::PciWindows;
use bhyve_devices::Bus;
use bhyve_firmware::acpi::{self, AcpiSpec, ComPort, HpetSpec, PciRootSpec, PmPorts, PrtEntry};
use bhyve_firmware::mptable::{self, CpuIdentity, MpTableSpec, PciIntx};
use bhyve_firmware::smbios::{self, SmbiosSpec};
use bhyve_firmware::MemLayout;
use vm_memory::GuestMemoryMmap;

use crate::bootorder::{BootOrder, BOOTORDER_FILE};
use crate::pci::PciPlatform;
use crate::platform::LegacySpec;
use crate::MachineError;

fn err(e: impl std::fmt::Display) -> MachineError {
    MachineError::new(e.to_string())
}

/// bhyve(8) builds the MP table itself at every start (bhyveload does
/// not), so both boot paths get one sized for this run's `-c`, with an
/// interrupt entry for every PCI INTx in use.
pub fn write_mptable(
    mem: &GuestMemoryMmap,
    cpus: usize,
    cpu: CpuIdentity,
    intx: &[(u8, u8, IntxRoute)],
) -> Result<(), MachineError> {
    let spec = MpTableSpec {
        cpu,
        pci_intx: intx
            .iter()
            .map(|&(slot, pin, r)| PciIntx {
                slot,
                pin,
                ioapic_pin: r.ioapic_pin as u8,
            })
            .collect(),
        ..MpTableSpec::new(cpus)
    };
    mptable::write(mem, &spec).map_err(err)
}

/// The PCI root as the DSDT and MCFG describe it: bhyve's windows, the
/// LPC bridge's slot, and `_PRT` entries for the INTx routes in use.
pub fn pci_root_spec(pci: &PciPlatform, windows: PciWindows) -> PciRootSpec {
    PciRootSpec {
        ecam_base: bhyve_devices::pci::ECAM_BASE,
        ecam_end_bus: (bhyve_devices::pci::ECAM_SIZE >> 20).saturating_sub(1) as u8,
        io_window: (windows.io.0 as u16, windows.io.1 as u32),
        mem32_window: windows.mem32,
        mem64_window: windows.mem64,
        lpc_slot: pci.lpc_slot,
        prt: pci
            .intx_routes()
            .into_iter()
            .map(|(slot, pin, r)| PrtEntry {
                slot,
                pin: pin - 1,
                ioapic_pin: r.ioapic_pin,
                pirq: r.pirq,
            })
            .collect(),
    }
}

/// What the ACPI tables describe: this run's vCPUs, COM ports and PCI
/// root, and the PM registers, SMI command port and HPET the platform
/// always has (their constants come from the devices, so tables and
/// devices cannot drift).
pub fn acpi_spec(cpus: usize, legacy: &LegacySpec, pci: Option<PciRootSpec>) -> AcpiSpec {
    use bhyve_devices::{acpi_pm as pm, hpet, uart::COM_PORTS};
    let com_ports = legacy
        .com
        .iter()
        .filter_map(|(i, _)| {
            let (base, irq) = *COM_PORTS.get(*i)?;
            Some(ComPort {
                index: *i as u8,
                base: base as u16,
                irq: irq as u8,
            })
        })
        .collect();
    let at =
        |port: u64| (port - pm::PM1A_EVT_PORT + legacy.pm_base.unwrap_or(pm::PM1A_EVT_PORT)) as u16;
    AcpiSpec {
        com_ports,
        pm: PmPorts {
            pm1a_evt: at(pm::PM1A_EVT_PORT),
            pm1a_cnt: at(pm::PM1A_CNT_PORT),
            pm_tmr: at(pm::PM_TMR_PORT),
            // bhyve's GPE0 block (0x40c) serves only its VM generation
            // counter, which we do not have: no GPE block.
            gpe0: None,
            smi_cmd: pm::SMI_CMD_PORT as u16,
            acpi_enable: pm::ACPI_ENABLE,
            acpi_disable: pm::ACPI_DISABLE,
        },
        sci_irq: pm::SCI_IRQ as u8,
        hpet: Some(HpetSpec {
            base: hpet::HPET_BASE as u32,
            block_id: hpet::capabilities() as u32,
        }),
        s5_slp_typ: pm::SLP_TYP_S5 as u8,
        fw_cfg: legacy.fw_cfg_qemu.then_some(fw_cfg_ports()),
        pci,
        ..AcpiSpec::new(cpus)
    }
}

/// QEMU fw_cfg's I/O ports as its DSDT device claims them: selector,
/// data and the DMA register (QEMU's 0x510, length 12).
fn fw_cfg_ports() -> (u16, u8) {
    let end = fw_cfg::FW_CFG_PORT_DMA + fw_cfg::FW_CFG_DMA_LEN;
    (
        fw_cfg::FW_CFG_PORT_SEL,
        (end - fw_cfg::FW_CFG_PORT_SEL) as u8,
    )
}

/// Like the MP table, bhyve(8) writes the ACPI tables at every start
/// (bhyveload does not), where a guest finds them by scanning the BIOS
/// area for the RSDP.
pub fn write_acpi_tables(mem: &GuestMemoryMmap, spec: &AcpiSpec) -> Result<(), MachineError> {
    acpi::write(mem, spec).map(|_| ()).map_err(err)
}

pub fn write_smbios(mem: &GuestMemoryMmap, spec: &SmbiosSpec) -> Result<(), MachineError> {
    smbios::write(mem, spec).map_err(err)
}

/// Everything QEMU-flavoured firmware reads through fw_cfg.
pub struct FwCfgContents<'a> {
    pub cpus: usize,
    pub layout: MemLayout,
    pub acpi: Option<&'a AcpiSpec>,
    pub smbios: &'a SmbiosSpec,
    pub user: &'a [FwCfgUserFile],
    /// `bootorder` from the devices' `bootindex`.
    pub bootorder: &'a BootOrder,
    /// `boot.kernel` (+ `boot.initrd`, `boot.cmdline`) given to the
    /// firmware as QEMU's `-kernel` does.
    pub kernel: Option<&'a FwCfgKernel>,
}

/// A kernel (or EFI application), initrd and command line for the
/// firmware to boot (OVMF's QemuKernelLoaderFsDxe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgKernel {
    pub kernel: String,
    pub initrd: Option<String>,
    pub cmdline: String,
}

impl FwCfgKernel {
    /// The numbered items, with the files read now; a missing file is
    /// bhyve's boot error (exit 4).
    fn items(&self) -> Result<Vec<(u16, Vec<u8>)>, MachineError> {
        let read = |what: &str, path: &str| {
            std::fs::read(path).map_err(|e| err(format!("{what} {path}: {e}")))
        };
        let kernel = read("boot.kernel", &self.kernel)?;
        let initrd = match &self.initrd {
            Some(p) => Some(read("boot.initrd", p)?),
            None => None,
        };
        Ok(fw_cfg::kernel_items(
            &kernel,
            initrd.as_deref(),
            &self.cmdline,
        ))
    }
}

/// Builds the fw_cfg device with QEMU's items and files and puts it on
/// its ports.
pub fn install_fw_cfg(
    pio: &Bus,
    mem: &GuestMemoryMmap,
    c: &FwCfgContents,
) -> Result<(), MachineError> {
    let cpus = (c.cpus as u16).to_le_bytes().to_vec();
    let e820: Vec<(u64, u64, u32)> = c
        .layout
        .e820()
        .iter()
        .map(|e| (e.addr, e.size, e.kind as u32))
        .collect();
    let mut b = FwCfgBuilder::new()
        .item(FW_CFG_NB_CPUS, cpus.clone())
        .and_then(|b| b.item(FW_CFG_MAX_CPUS, cpus))
        .and_then(|b| b.file("etc/e820", fw_cfg::e820_file(&e820)))
        .map_err(err)?;
    if let Some(spec) = c.acpi {
        let t = acpi::fw_cfg_tables(spec).map_err(err)?;
        b = b
            .file(acpi::loader::RSDP_FILE, t.rsdp)
            .and_then(|b| b.file(acpi::loader::TABLES_FILE, t.tables))
            .and_then(|b| b.file(acpi::loader::LOADER_FILE, t.loader))
            .map_err(err)?;
    }
    let (anchor, tables) = smbios::fw_cfg_files(c.smbios).map_err(err)?;
    b = b
        .file(smbios::FW_CFG_ANCHOR, anchor)
        .and_then(|b| b.file(smbios::FW_CFG_TABLES, tables))
        .map_err(err)?;
    if let Some(k) = c.kernel {
        for (key, data) in k.items()? {
            b = b.item(key, data).map_err(err)?;
        }
    }
    if let Some(order) = c.bootorder.file() {
        b = b.file(BOOTORDER_FILE, order).map_err(err)?;
    }
    for f in c.user {
        let data = f
            .load()
            .map_err(|e| MachineError::with_code(e.to_string(), e.exit_code()))?;
        b = b
            .file(&f.name, data)
            .map_err(|e| err(format!("fw_cfg file {}: {e}", f.name)))?;
    }
    let dev = Arc::new(Mutex::new(b.build(Arc::new(mem.clone()))));
    for (base, len) in FwCfg::port_ranges() {
        pio.insert(base, len, dev.clone())
            .map_err(|e| err(format!("fw_cfg: {e}")))?;
    }
    Ok(())
}
