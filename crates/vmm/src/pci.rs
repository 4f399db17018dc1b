//! PCI on KVM: the `-s` functions built from the configuration tree, and
//! their interrupts as KVM delivers them.
//!
//! - INTx: PIRQ link k drives GSI 16 + k (I/O APIC pin 16 + k); when the
//!   guest points the link's PIRQ register at an ISA IRQ, the same GSI
//!   also gets a route to that 8259 pin ([`KvmPirqRouter`]).
//! - MSI/MSI-X: each vector the guest unmasks gets a GSI routed to its
//!   message and an irqfd, so firing it is one eventfd write from any
//!   thread ([`KvmPciInterrupts`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bhyve_config::{pci_devices, Config};
use bhyve_devices::bus::Bus;
use bhyve_devices::pci::config::PciId;
use bhyve_devices::pci::intx::{IntxLines, IntxRoute, PirqRouter, PirqTable, PIRQ_COUNT};
use bhyve_devices::pci::piix4_pm::{AcpiPmDecoder, Piix4Pm};
use bhyve_devices::pci::root::{ConfigIo, Ecam, PciAddress, PciRoot, PciWindows};
use bhyve_devices::pci::{
    HostBridge, LpcBridge, MsiMessage, PciDevice, PciInterrupts, CONF1_ADDR_PORT, ECAM_BASE,
    ECAM_SIZE,
};
use bhyve_devices::{AcpiPm, IrqLine, ResetControl};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::gsi::{IrqChip, Route};
use crate::kvm_vm::{GsiRouter, KvmVm};
use crate::virtio::{virtio_device, KvmDoorbells};
use crate::MachineError;
use bhyve_devices::pci::Doorbells;
use bhyve_devices::virtio::VirtioPci;
use vm_memory::GuestMemoryMmap;

/// What a `-s` slot holds, once its configuration is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciEmulation {
    HostBridge(PciId),
    Lpc(PciId),
    /// QEMU's PIIX4 PM function (our extension): moves the ACPI PM block.
    Piix4Pm(PciId),
    Virtio(crate::virtio::VirtioSpec),
    /// bhyve's `ahci`, `ahci-hd` and `ahci-cd`.
    Ahci(crate::ahci::AhciSpec),
    /// bhyve's `nvme` controller.
    Nvme(crate::nvme::NvmeSpec),
    /// bhyve's `e1000` (82545EM).
    E1000(crate::e1000::E1000Spec),
    /// bhyve's PCI 16550 `uart`.
    Uart(crate::uart_pci::UartPciSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunctionSpec {
    pub addr: PciAddress,
    pub emulation: PciEmulation,
    /// bhyve's `emulation@pci.B.S.F`, for messages and the boot order.
    pub name: String,
    /// `bootindex=N` of a bootable device (fw_cfg `bootorder`).
    pub bootindex: Option<i64>,
}

/// Emulations bhyve lets boot (`blockif_add_boot_device`): storage.
fn bootable(emulation: &PciEmulation) -> bool {
    matches!(
        emulation,
        PciEmulation::Virtio(crate::virtio::VirtioSpec {
            kind: crate::virtio::VirtioKind::Blk(_) | crate::virtio::VirtioKind::Scsi(_),
            ..
        }) | PciEmulation::Nvme(_)
            | PciEmulation::Ahci(_)
    )
}

/// The `pcireg.*` names bhyve reads and the header bytes they set.
const PCIREG: [(&str, u8); 5] = [
    ("vendor", 2),
    ("device", 2),
    ("revid", 1),
    ("subvendor", 2),
    ("subdevice", 2),
];

/// strtol(value, NULL, 0), as bhyve parses IDs: 0x hex, leading 0 octal.
pub(crate) fn parse_c_number(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// The host's function whose IDs `pcireg.*=host` copies: the host bridge
/// at 0:0:0, or the first ISA bridge on bus 0 for the LPC bridge.
fn host_function(lpc: bool) -> Option<PathBuf> {
    let root = Path::new("/sys/bus/pci/devices");
    if !lpc {
        let p = root.join("0000:00:00.0");
        return p.exists().then_some(p);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("0000:00:"))
                && std::fs::read_to_string(p.join("class"))
                    .is_ok_and(|c| c.trim().starts_with("0x0601"))
        })
        .collect();
    v.sort();
    v.into_iter().next()
}

fn host_value(lpc: bool, reg: &str) -> Option<u64> {
    let file = match reg {
        "vendor" => "vendor",
        "device" => "device",
        "revid" => "revision",
        "subvendor" => "subsystem_vendor",
        _ => "subsystem_device",
    };
    let text = std::fs::read_to_string(host_function(lpc)?.join(file)).ok()?;
    parse_c_number(&text)
}

/// Applies `pcireg.*` (and the older `vendor`/`devid` of the host bridge)
/// from the device's node to `id`.
fn pci_id(cfg: &Config, node: &str, mut id: PciId, lpc: bool) -> Result<PciId, MachineError> {
    let mut set = |name: &str, value: String, width: u8| -> Result<(), MachineError> {
        let v = if value == "host" {
            host_value(lpc, name).ok_or_else(|| {
                MachineError::new(format!(
                    "{node}.pcireg.{name}=host: the host has no matching PCI function"
                ))
            })?
        } else {
            parse_c_number(&value).ok_or_else(|| {
                MachineError::new(format!("{node}: invalid value '{value}' for {name}"))
            })?
        };
        if v >> (8 * u32::from(width)) != 0 {
            return Err(MachineError::new(format!(
                "{node}: value '{value}' for {name} does not fit in {width} byte(s)"
            )));
        }
        match name {
            "vendor" => id.vendor = v as u16,
            "device" => id.device = v as u16,
            "revid" => id.revision = v as u8,
            "subvendor" => id.subsystem_vendor = v as u16,
            _ => id.subsystem = v as u16,
        }
        Ok(())
    };
    if !lpc {
        if let Some(v) = cfg.get(&format!("{node}.vendor")) {
            set("vendor", v, 2)?;
        }
        if let Some(v) = cfg.get(&format!("{node}.devid")) {
            set("device", v, 2)?;
        }
    }
    for (name, width) in PCIREG {
        if let Some(v) = cfg.get(&format!("{node}.pcireg.{name}")) {
            set(name, v, width)?;
        }
    }
    Ok(id)
}

/// The PCI functions of `cfg` this build emulates; `Ok(None)` for an
/// emulation that exists in bhyve but not here yet (the caller reports
/// it).
pub fn pci_function(
    cfg: &Config,
    addr: bhyve_config::PciAddr,
    device: &str,
) -> Result<Option<PciFunctionSpec>, MachineError> {
    let node = format!("pci.{}.{}.{}", addr.bus, addr.slot, addr.func);
    let emulation = match device {
        "hostbridge" => {
            PciEmulation::HostBridge(pci_id(cfg, &node, HostBridge::bhyve_id(), false)?)
        }
        "lpc" => PciEmulation::Lpc(pci_id(cfg, &node, LpcBridge::bhyve_id(), true)?),
        "piix4-pm" => PciEmulation::Piix4Pm(pci_id(cfg, &node, Piix4Pm::qemu_id(), false)?),
        "ahci" => PciEmulation::Ahci(crate::ahci::ahci_spec(cfg, &node)?),
        "nvme" => PciEmulation::Nvme(crate::nvme::nvme_spec(cfg, &node)?),
        "e1000" => PciEmulation::E1000(crate::e1000::e1000_spec(cfg, &node)?),
        "uart" => PciEmulation::Uart(crate::uart_pci::uart_spec(cfg, &node)),
        other => match crate::virtio::virtio_spec(cfg, &node, other)? {
            Some(v) => PciEmulation::Virtio(v),
            None => return Ok(None),
        },
    };
    let name = format!("{device}@pci.{}.{}.{}", addr.bus, addr.slot, addr.func);
    let bootindex = match cfg.get(&format!("{node}.bootindex")) {
        None => None,
        Some(v) => {
            if !bootable(&emulation) {
                return Err(MachineError::new(format!(
                    "{name}: bootindex is only supported by bootable (storage) devices"
                )));
            }
            let i = v
                .trim()
                .parse::<i64>()
                .map_err(|_| MachineError::new(format!("Invalid bootindex {v} for {name}")))?;
            Some(i)
        }
    };
    Ok(Some(PciFunctionSpec {
        addr: PciAddress {
            slot: addr.slot,
            func: addr.func,
        },
        emulation,
        name,
        bootindex,
    }))
}

/// Every function of `cfg`, or the first one that is not emulated yet.
pub fn pci_functions(cfg: &Config) -> Result<Vec<PciFunctionSpec>, MachineError> {
    let mut v = Vec::new();
    for (addr, device) in pci_devices(cfg) {
        let bsf = format!("{}:{}:{}", addr.bus, addr.slot, addr.func);
        let Some(emul) = bhyve_config::find_emulation(&device) else {
            return Err(MachineError::new(format!(
                "pci {bsf}: unknown emulation '{device}'"
            )));
        };
        match pci_function(cfg, addr, emul.device())? {
            Some(f) => v.push(f),
            None => {
                return Err(MachineError::new(format!(
                    "pci {bsf}: emulation '{device}' is not implemented yet"
                )))
            }
        }
    }
    Ok(v)
}

/// Steers PIRQ link k's GSI (16 + k) to the 8259 pin its register names.
pub struct KvmPirqRouter(pub GsiRouter);

impl PirqRouter for KvmPirqRouter {
    fn pirq_changed(&self, pirq: u8, irq: Option<u8>) {
        let gsi = bhyve_devices::pci::intx::FIRST_PCI_PIN + u32::from(pirq);
        let r = self.0.update(|t| {
            t.remove(gsi);
            t.add(
                gsi,
                Route::Irqchip {
                    chip: IrqChip::Ioapic,
                    pin: gsi,
                },
            )?;
            if let Some(irq) = irq {
                let (chip, pin) = if irq < 8 {
                    (IrqChip::PicMaster, irq)
                } else {
                    (IrqChip::PicSlave, irq - 8)
                };
                t.add(
                    gsi,
                    Route::Irqchip {
                        chip,
                        pin: pin.into(),
                    },
                )?;
            }
            Ok(())
        });
        if let Err(e) = r {
            log::warn!("PIRQ {pirq} → IRQ {irq:?}: {e}");
        }
    }
}

struct MsiVector {
    gsi: u32,
    evt: EventFd,
}

/// One function's interrupt outputs on KVM.
pub struct KvmPciInterrupts {
    router: GsiRouter,
    intx: Option<(Arc<IntxLines>, u8)>,
    vectors: Mutex<Vec<Option<MsiVector>>>,
}

impl KvmPciInterrupts {
    pub fn new(router: GsiRouter, intx: Option<(Arc<IntxLines>, u8)>) -> Self {
        KvmPciInterrupts {
            router,
            intx,
            vectors: Mutex::new(Vec::new()),
        }
    }

    fn new_vector(&self, msg: MsiMessage) -> Result<MsiVector, String> {
        let gsi = self
            .router
            .update(|t| t.add_msi(msg.address, msg.data))
            .map_err(|e| e.to_string())?;
        let evt = EventFd::new(EFD_NONBLOCK).map_err(|e| e.to_string())?;
        if let Err(e) = self.router.vm_fd().register_irqfd(&evt, gsi) {
            let _ = self.router.update(|t| Ok(t.remove(gsi)));
            return Err(format!("KVM_IRQFD: {e}"));
        }
        Ok(MsiVector { gsi, evt })
    }
}

impl Drop for KvmPciInterrupts {
    fn drop(&mut self) {
        let vectors = self.vectors.get_mut().unwrap_or_else(|e| e.into_inner());
        for v in vectors.drain(..).flatten() {
            let _ = self.router.vm_fd().unregister_irqfd(&v.evt, v.gsi);
            let _ = self.router.update(|t| Ok(t.remove(v.gsi)));
        }
    }
}

impl PciInterrupts for KvmPciInterrupts {
    fn set_intx(&self, asserted: bool) {
        if let Some((lines, pirq)) = &self.intx {
            lines.set(*pirq, asserted);
        }
    }

    fn route_msi(&self, vector: u16, msg: Option<MsiMessage>) {
        // A masked vector keeps its route: it is not fired while masked,
        // and unmasking it again then costs nothing.
        let Some(msg) = msg else { return };
        let mut vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        let i = vector as usize;
        if vs.len() <= i {
            vs.resize_with(i + 1, || None);
        }
        let r = match &vs[i] {
            Some(v) => {
                let gsi = v.gsi;
                self.router
                    .update(|t| {
                        t.remove(gsi);
                        t.add(
                            gsi,
                            Route::Msi {
                                address: msg.address,
                                data: msg.data,
                            },
                        )
                    })
                    .map_err(|e| e.to_string())
            }
            None => self.new_vector(msg).map(|v| vs[i] = Some(v)),
        };
        if let Err(e) = r {
            log::warn!(
                "MSI vector {vector} → {:#x}/{:#x}: {e}",
                msg.address,
                msg.data
            );
        }
    }

    fn fire_msi(&self, vector: u16) {
        let vs = self.vectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(v)) = vs.get(vector as usize) {
            if let Err(e) = v.evt.write(1) {
                log::warn!("MSI vector {vector}: {e}");
            }
        }
    }
}

/// Bus 0 of a running VM.
pub struct PciPlatform {
    pub root: Arc<Mutex<PciRoot>>,
    /// The LPC bridge's slot, if there is one.
    pub lpc_slot: Option<u8>,
    /// The PCI uarts' backend threads, stopped when the VM goes.
    _serial: Vec<bhyve_backends::BackendHandle>,
}

impl PciPlatform {
    /// Builds the root (config mechanism #1 with the reset register at
    /// 0xcf9, ECAM) and adds `functions`. `reserved_irqs` are the ISA
    /// IRQs of the LPC devices, which PIRQ links are not given. `pm` is
    /// the ACPI PM block (on `pio`) a `piix4-pm` function moves.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        vm: &KvmVm,
        pio: &Arc<Bus>,
        mmio: &Arc<Bus>,
        windows: PciWindows,
        functions: &[PciFunctionSpec],
        reset: ResetControl,
        reserved_irqs: u16,
        pm: &Arc<Mutex<AcpiPm>>,
        mem: &GuestMemoryMmap,
    ) -> Result<Self, MachineError> {
        let router = vm.gsi_router();
        let pirq = Arc::new(Mutex::new(PirqTable::new(reserved_irqs)));
        pirq.lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_router(Arc::new(KvmPirqRouter(router.clone())));
        let lines: Vec<Arc<dyn IrqLine>> = (0..PIRQ_COUNT as u32)
            .map(|k| vm.irq_line(bhyve_devices::pci::intx::FIRST_PCI_PIN + k))
            .collect();
        let intx = Arc::new(IntxLines::new(lines));
        let root = Arc::new(Mutex::new(PciRoot::new(
            pio.clone(),
            mmio.clone(),
            windows,
            pirq.clone(),
        )));
        let err = |what: &str, e: &dyn std::fmt::Display| MachineError::new(format!("{what}: {e}"));
        pio.insert(
            CONF1_ADDR_PORT,
            8,
            Arc::new(Mutex::new(ConfigIo::new(root.clone(), Some(reset)))),
        )
        .map_err(|e| err("PCI configuration ports", &e))?;
        mmio.insert(
            ECAM_BASE,
            ECAM_SIZE,
            Arc::new(Mutex::new(Ecam::new(root.clone()))),
        )
        .map_err(|e| err("PCI ECAM", &e))?;
        let mut lpc_slot = None;
        let mut serial = Vec::new();
        for f in functions {
            let dev: Arc<Mutex<dyn PciDevice>> = match &f.emulation {
                PciEmulation::HostBridge(id) => Arc::new(Mutex::new(HostBridge::new(*id))),
                PciEmulation::Lpc(id) => {
                    lpc_slot = Some(f.addr.slot);
                    Arc::new(Mutex::new(LpcBridge::new(*id, pirq.clone())))
                }
                PciEmulation::Piix4Pm(id) => {
                    let base = pm.lock().unwrap_or_else(|e| e.into_inner()).ranges()[0].0;
                    let decoder = Arc::new(AcpiPmDecoder::new(pio.clone(), pm.clone()));
                    Arc::new(Mutex::new(Piix4Pm::new(*id, decoder, base as u16)))
                }
                PciEmulation::Virtio(spec) => {
                    let doorbells: Arc<dyn Doorbells> = Arc::new(KvmDoorbells(vm.fd().clone()));
                    VirtioPci::new_shared(
                        virtio_device(spec)?,
                        mem.clone(),
                        VirtioPci::irq_mode(spec.msix),
                        Some(doorbells),
                    )
                    .map_err(|e| {
                        MachineError::new(format!("pci {}:{}: {e}", f.addr.slot, f.addr.func))
                    })?
                }
                PciEmulation::Ahci(spec) => crate::ahci::ahci_device(spec, mem)?,
                PciEmulation::Nvme(spec) => {
                    let ident = format!("{}:{}", f.addr.slot, f.addr.func);
                    crate::nvme::nvme_device(spec, mem, &ident)?
                }
                PciEmulation::E1000(spec) => crate::e1000::e1000_device(spec, mem)?,
                PciEmulation::Uart(spec) => {
                    let (dev, handle) =
                        crate::uart_pci::uart_device(spec, f.addr.slot, f.addr.func)?;
                    serial.extend(handle);
                    dev
                }
            };
            let (router, intx) = (router.clone(), intx.clone());
            let irq = move |route: Option<IntxRoute>| -> Arc<dyn PciInterrupts> {
                Arc::new(KvmPciInterrupts::new(router, route.map(|r| (intx, r.pirq))))
            };
            root.lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(f.addr, dev, irq)
                .map_err(|e| MachineError::new(e.to_string()))?;
        }
        Ok(PciPlatform {
            root,
            lpc_slot,
            _serial: serial,
        })
    }

    /// `(slot, pin 1–4, route)` of every INTx in use, for the MP table and
    /// the DSDT.
    pub fn intx_routes(&self) -> Vec<(u8, u8, IntxRoute)> {
        self.root
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .intx_routes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::config as cfg;

    #[test]
    fn ids_from_configuration() {
        let c = cfg(&[
            ("pci.0.0.0.device", "hostbridge"),
            ("pci.0.0.0.pcireg.vendor", "0x8086"),
            ("pci.0.0.0.pcireg.device", "0x1237"),
            ("pci.0.0.0.pcireg.subvendor", "0x1af4"),
            ("pci.0.0.0.pcireg.subdevice", "4352"),
            ("pci.0.0.0.pcireg.revid", "02"),
            ("pci.0.31.0.device", "lpc"),
        ]);
        let f = pci_functions(&c).unwrap();
        assert_eq!(f.len(), 2);
        let PciEmulation::HostBridge(id) = f[0].emulation else {
            panic!("{f:?}")
        };
        assert_eq!(
            (
                id.vendor,
                id.device,
                id.subsystem_vendor,
                id.subsystem,
                id.revision
            ),
            (0x8086, 0x1237, 0x1af4, 0x1100, 2)
        );
        assert_eq!(f[1].emulation, PciEmulation::Lpc(LpcBridge::bhyve_id()));
        // amd_hostbridge's legacy conf: vendor/devid.
        let c = cfg(&[
            ("pci.0.0.0.device", "hostbridge"),
            ("pci.0.0.0.vendor", "0x1022"),
            ("pci.0.0.0.devid", "0x7432"),
        ]);
        let PciEmulation::HostBridge(id) = pci_functions(&c).unwrap()[0].emulation else {
            panic!()
        };
        assert_eq!((id.vendor, id.device), (0x1022, 0x7432));
    }

    #[test]
    fn bad_ids_and_unimplemented_emulations() {
        let e = pci_functions(&cfg(&[
            ("pci.0.0.0.device", "hostbridge"),
            ("pci.0.0.0.pcireg.vendor", "0x12345"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = pci_functions(&cfg(&[
            ("pci.0.0.0.device", "hostbridge"),
            ("pci.0.0.0.pcireg.device", "intel"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("invalid value 'intel'"), "{e}");
        let e = pci_functions(&cfg(&[("pci.0.3.0.device", "xhci")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pci 0:3:0: emulation 'xhci' is not implemented yet"
        );
    }

    #[test]
    fn c_numbers() {
        assert_eq!(parse_c_number("0x1aF4"), Some(0x1af4));
        assert_eq!(parse_c_number("010"), Some(8));
        assert_eq!(parse_c_number("0"), Some(0));
        assert_eq!(parse_c_number("12"), Some(12));
        assert_eq!(parse_c_number("0x"), None);
        assert_eq!(parse_c_number("-1"), None);
    }
}
