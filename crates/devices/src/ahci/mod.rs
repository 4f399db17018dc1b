//! AHCI SATA controller (bhyve's `pci_ahci.c`): an Intel ICH8-like HBA
//! (8086:2821, class 01/06/01) with its registers in BAR 5 (ABAR), one
//! MSI vector (or INTx), and up to 32 ports, each a SATA disk (`hd`) or
//! an ATAPI CD/DVD-ROM (`cd`) over a [`BlockIo`] backend.
//!
//! - `mod.rs`: the HBA — global registers, interrupt aggregation, BAR
//!   decoding, the glue between backend completions and ports.
//! - `port.rs`: per-port registers and the command-list state machine.
//! - `ata.rs` / `atapi.rs`: the commands of disks and of CD-ROMs.
//! - `prdt.rs`: command headers and PRDTs, read defensively.
//!
//! Threads: commands are decoded on the vCPU thread that wrote PxCI (a
//! few small guest-memory reads, as bhyve does) and data moves on the
//! backend's threads; a completion locks the HBA, finishes its command
//! (FIS, PxCI/PxSACT, interrupt) and issues what the guest queued
//! behind it. Lock order: the PCI root, then the HBA; the HBA never
//! waits for a backend thread.

pub mod ata;
mod atapi;
mod port;
pub mod prdt;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_atapi;

use std::cell::Cell;
use std::sync::{Arc, Mutex, Weak};

use vm_memory::GuestMemoryMmap;

use crate::blockif::{BlockInfo, BlockIo, BlockRequest};
use crate::pci::config::{BarKind, PciConfig, PciError, PciId};
use crate::pci::{le_value, put_le, PciDevice};

pub use ata::Ident;
use port::{Completion, Ctx, Port};

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_ICH8_AHCI: u16 = 0x2821;
/// The ABAR.
pub const ABAR: u8 = 5;
pub const MAX_PORTS: usize = 32;
/// ICH8 has 6 ports: the HBA never reports fewer (bhyve's DEF_PORTS).
const DEF_PORTS: usize = 6;
const PORT_BASE: u64 = 0x100;
const PORT_STEP: u64 = 0x80;

// Global registers.
const CAP: u64 = 0x00;
const GHC: u64 = 0x04;
const IS: u64 = 0x08;
const PI: u64 = 0x0c;
const VS: u64 = 0x10;
const CAP2: u64 = 0x24;

const GHC_HR: u32 = 1 << 0;
const GHC_IE: u32 = 1 << 1;
const GHC_AE: u32 = 1 << 31;

/// 64-bit addressing, NCQ, SNotification, mechanical presence switch,
/// staggered spin-up, aggressive link power management, activity LED,
/// command list override, Gen3, partial/slumber states, external SATA
/// (bhyve's CAP), 32 command slots.
const CAP_BITS: u32 = (1 << 31)
    | (1 << 30)
    | (1 << 29)
    | (1 << 28)
    | (1 << 27)
    | (1 << 26)
    | (1 << 25)
    | (1 << 24)
    | (3 << 20)
    | (1 << 15)
    | (1 << 14)
    | (1 << 13)
    | (31 << 8)
    | (1 << 5);
/// Automatic partial-to-slumber transitions.
const CAP2_APST: u32 = 1 << 2;
const VERSION_1_3: u32 = 0x0001_0300;

#[derive(Debug, thiserror::Error)]
pub enum AhciError {
    #[error("invalid AHCI port {0} (0 to 31)")]
    BadPort(usize),
    #[error("AHCI port {0} configured twice")]
    DuplicatePort(usize),
    #[error("{0}")]
    Pci(#[from] PciError),
}

/// What sits behind a port.
pub struct Drive {
    pub backend: Arc<dyn BlockIo>,
    pub info: BlockInfo,
    pub atapi: bool,
    pub ident: Ident,
}

impl Drive {
    pub fn new(backend: Arc<dyn BlockIo>, atapi: bool, ident: Ident) -> Drive {
        let info = backend.info();
        Drive {
            backend,
            info,
            atapi,
            ident,
        }
    }

    /// Transfers are cut on these boundaries.
    fn unit(&self) -> u64 {
        if self.atapi {
            atapi::BLOCK
        } else {
            u64::from(self.info.sector_size.max(512))
        }
    }
}

/// bhyve's default serial number of a port: from the MD5 of its path.
pub fn default_serial(path: &str) -> String {
    let d = md5::compute(path.as_bytes()).0;
    format!(
        "BHYVE-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}",
        d[0], d[1], d[2], d[3], d[4], d[5]
    )
}

thread_local! {
    /// This thread is inside the HBA (holds its lock): a completion
    /// delivered synchronously must be queued, not re-lock it.
    static IN_HBA: Cell<bool> = const { Cell::new(false) };
}

/// How backend completions find their way back to the HBA.
pub(crate) struct Link {
    hba: Weak<Mutex<Ahci>>,
    deferred: Arc<Mutex<Vec<Completion>>>,
}

impl Link {
    fn submit(&self, backend: &Arc<dyn BlockIo>, req: BlockRequest, port: u8, slot: u8, gen: u64) {
        let hba = self.hba.clone();
        let deferred = self.deferred.clone();
        backend.submit(
            req,
            Box::new(move |_req, result| {
                let c = Completion {
                    port,
                    slot,
                    gen,
                    result,
                };
                if IN_HBA.with(|f| f.get()) {
                    deferred.lock().unwrap_or_else(|e| e.into_inner()).push(c);
                    return;
                }
                let Some(h) = hba.upgrade() else { return };
                let mut g = h.lock().unwrap_or_else(|e| e.into_inner());
                g.run(|a| a.complete(c));
            }),
        );
    }
}

pub struct Ahci {
    config: PciConfig,
    mem: GuestMemoryMmap,
    ports: Vec<Port>,
    ghc: u32,
    is: u32,
    pi: u32,
    link: Link,
}

impl Ahci {
    /// An HBA with `drives` on their port numbers, sharing `mem` with the
    /// guest; shared because backend completions reach it.
    pub fn new_shared(
        drives: Vec<(usize, Drive)>,
        mem: GuestMemoryMmap,
    ) -> Result<Arc<Mutex<Ahci>>, AhciError> {
        let mut slots: Vec<Option<Drive>> = (0..MAX_PORTS).map(|_| None).collect();
        for (n, d) in drives {
            let s = slots.get_mut(n).ok_or(AhciError::BadPort(n))?;
            if s.is_some() {
                return Err(AhciError::DuplicatePort(n));
            }
            *s = Some(d);
        }
        let used = slots.iter().rposition(|s| s.is_some()).map_or(0, |i| i + 1);
        let nports = used.max(DEF_PORTS);
        slots.truncate(nports);
        let pi = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .fold(0u32, |a, (i, _)| a | (1 << i));
        let ports: Vec<Port> = slots
            .into_iter()
            .enumerate()
            .map(|(i, d)| Port::new(i as u8, d, &mem))
            .collect();
        let mut config = PciConfig::new(PciId {
            vendor: VENDOR_INTEL,
            device: DEVICE_ICH8_AHCI,
            revision: 0,
            class: 0x01,
            subclass: 0x06,
            prog_if: 0x01,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        // One vector for every port, as QEMU's ICH9: drivers handle a
        // shared vector through the global IS register.
        config.add_msi(0)?;
        config.add_bar(ABAR, BarKind::Mem32, PORT_BASE + nports as u64 * PORT_STEP)?;
        config.set_intpin(1);
        Ok(Arc::new_cyclic(|this| {
            Mutex::new(Ahci {
                config,
                mem,
                ports,
                ghc: GHC_AE,
                is: 0,
                pi,
                link: Link {
                    hba: this.clone(),
                    deferred: Arc::new(Mutex::new(Vec::new())),
                },
            })
        }))
    }

    fn cap(&self) -> u32 {
        CAP_BITS | (self.ports.len() as u32 - 1)
    }

    /// Runs `f` as the HBA's owner, then finishes what completed
    /// meanwhile on this thread and raises the interrupts ports asked
    /// for.
    fn run(&mut self, f: impl FnOnce(&mut Ahci)) {
        let was = IN_HBA.with(|x| x.replace(true));
        f(self);
        loop {
            let batch =
                std::mem::take(&mut *self.link.deferred.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                break;
            }
            for c in batch {
                self.complete(c);
            }
        }
        IN_HBA.with(|x| x.set(was));
    }

    fn complete(&mut self, c: Completion) {
        let p = usize::from(c.port);
        let Some(port) = self.ports.get_mut(p) else {
            return;
        };
        let ctx = Ctx {
            mem: &self.mem,
            link: &self.link,
        };
        port.complete(&ctx, c);
        self.port_intr(p);
    }

    /// A port's PxIS changed: the HBA's IS bit and an interrupt when the
    /// port has an enabled cause and the bit was not already pending.
    fn port_intr(&mut self, p: usize) {
        let port = &self.ports[p];
        if port.is & port.ie == 0 || self.is & (1 << p) != 0 {
            return;
        }
        self.is |= 1 << p;
        if self.ghc & GHC_IE != 0 && !self.config.raise_interrupt(0) {
            self.config.set_intx(true);
        }
    }

    /// After IS or GHC writes: re-collect the ports' causes, deliver
    /// them (MSI for bits in `mask`) or drop INTx.
    fn generate_intr(&mut self, mask: u32) {
        for (i, p) in self.ports.iter().enumerate() {
            if p.is & p.ie != 0 {
                self.is |= 1 << i;
            }
        }
        if self.is == 0 || self.ghc & GHC_IE == 0 {
            self.config.set_intx(false);
            return;
        }
        if self.config.msi_enabled() {
            if self.is & mask != 0 {
                self.config.raise_interrupt(0);
            }
        } else {
            self.config.set_intx(true);
        }
    }

    fn hba_reset(&mut self) {
        self.ghc = GHC_AE;
        self.is = 0;
        self.config.set_intx(false);
        for p in &mut self.ports {
            p.hba_reset(&self.mem);
        }
    }

    fn read_reg(&self, off: u64) -> u32 {
        match off {
            CAP => self.cap(),
            GHC => self.ghc,
            IS => self.is,
            PI => self.pi,
            VS => VERSION_1_3,
            CAP2 => CAP2_APST,
            o if o >= PORT_BASE => {
                let (p, r) = ((o - PORT_BASE) / PORT_STEP, (o - PORT_BASE) % PORT_STEP);
                self.ports.get(p as usize).map_or(0, |p| p.read(r))
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, off: u64, v: u32) {
        match off {
            GHC => {
                if v & GHC_HR != 0 {
                    return self.hba_reset();
                }
                self.ghc = GHC_AE | (v & GHC_IE);
                self.generate_intr(u32::MAX);
            }
            IS => {
                self.is &= !v;
                self.generate_intr(v);
            }
            o if o >= PORT_BASE => {
                let (p, r) = (
                    ((o - PORT_BASE) / PORT_STEP) as usize,
                    (o - PORT_BASE) % PORT_STEP,
                );
                let Some(port) = self.ports.get_mut(p) else {
                    return;
                };
                let ctx = Ctx {
                    mem: &self.mem,
                    link: &self.link,
                };
                port.write(&ctx, r, v);
                self.port_intr(p);
            }
            _ => {}
        }
    }

    /// How many ports the HBA reports (CAP.NP + 1).
    pub fn ports(&self) -> usize {
        self.ports.len()
    }
}

impl PciDevice for Ahci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar != ABAR {
            return data.fill(0xff);
        }
        // Dword registers; narrower reads see their part, an 8-byte read
        // two registers.
        let lo = u64::from(self.read_reg(offset & !3)) >> (8 * (offset & 3));
        let v = if data.len() > 4 && offset & 3 == 0 {
            lo | (u64::from(self.read_reg(offset + 4)) << 32)
        } else {
            lo
        };
        put_le(data, v);
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != ABAR || offset & 3 != 0 || !matches!(data.len(), 4 | 8) {
            log::debug!("ahci: ignored {}-byte write at {offset:#x}", data.len());
            return;
        }
        let v = le_value(data);
        self.run(|a| {
            a.write_reg(offset, v as u32);
            if data.len() == 8 {
                a.write_reg(offset + 4, (v >> 32) as u32);
            }
        });
    }

    fn reset(&mut self) {
        self.run(|a| a.hba_reset());
    }
}
