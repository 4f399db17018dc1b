//! Intel 82545EM gigabit Ethernet (bhyve's `pci_e82545`, `-s N,e1000`).
//!
//! PCI 8086:100f (subsystem 8086:1008): BAR 0 the 128 KiB register
//! window, BAR 1 the 64 KiB flash window (empty, as bhyve), BAR 2 eight
//! I/O ports giving indirect access to the registers (IOADDR at 0,
//! IODATA at 4); INTx, and one MSI vector when the guest enables it.
//!
//! Registers are bhyve's (`e82545_read/write_register`): link always up
//! at 1000 Mb/s full duplex; the EEPROM ([`eeprom`]) and PHY ([`phy`]);
//! ICR read-to-clear, ICS/IMS/IMC, and ITR moderation as bhyve: an
//! interrupt opens a window of ITR × 256 ns in which new causes wait, and
//! at its end one interrupt covers them. RDTR/RADV/TIDV/TADV are kept
//! but, as in bhyve, delay nothing.
//!
//! Data moves on worker threads ([`worker`]), never on a vCPU: a TDT
//! write kicks the transmit worker, which turns descriptors into frames
//! ([`tx`]) for the tap backend virtio-net uses; the receive worker
//! waits on the backend and fills receive descriptors ([`rx`]). Workers
//! take the function's lock only to copy ring state out and to publish
//! results; guest memory is accessed without it. A reset, a head write
//! or a ring disable bumps a generation so that a batch in flight is not
//! published; the bump waits for a write to guest memory in progress
//! (one frame's copy, never a backend), so nothing lands after the
//! register write returned (bhyve waits for its whole batch). A disable
//! still publishes the packets the batch completed (TDH/RDH move over
//! descriptors with DD), so a re-enable does not repeat them.

mod eeprom;
mod phy;
pub mod regs;
pub mod rx;
mod stats;
#[cfg(test)]
mod tests;
pub mod tx;
mod worker;

use std::sync::{Arc, Mutex, Weak};

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::pci::config::{BarKind, PciConfig, PciError, PciId};
use crate::pci::{put_le, PciDevice};
use crate::timer::{Clock, MonotonicClock};
use crate::virtio::net::NetBackend;
use crate::virtio::worker::Workers;
use eeprom::Eeprom;
use phy::Phy;
use regs::*;
use rx::RxFilter;
use stats::Stats;
use tx::{Ring, TxContext, TxParams};

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_82545EM_COPPER: u16 = 0x100f;
pub const SUBDEVICE: u16 = 0x1008;
pub const REGISTER_BAR: u8 = 0;
pub const FLASH_BAR: u8 = 1;
pub const IO_BAR: u8 = 2;
const REGISTER_BAR_LEN: u64 = 128 << 10;
const FLASH_BAR_LEN: u64 = 64 << 10;
const IO_BAR_LEN: u64 = 8;
const IOADDR: u64 = 0;
const IODATA: u64 = 4;
const IO_REGISTER_MAX: u32 = 0x1_ffff;
/// ITR counts 256 ns units.
const ITR_UNIT_NS: u64 = 256;

/// Events the workers wait on beside their stop event.
pub(crate) struct Kicks {
    pub tx: EventFd,
    pub rx: EventFd,
    pub itr: EventFd,
    /// Tests: runs on a worker right before it writes guest memory.
    #[cfg(test)]
    pub dma_hook: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

fn kick(e: &EventFd) {
    let _ = e.write(1);
}

/// Everything a guest register write can change, in one place.
#[derive(Default)]
struct Regs {
    ctrl: u32,
    ctrl_ext: u32,
    fcal: u32,
    fcah: u32,
    fct: u32,
    vet: u32,
    fcttv: u32,
    txcw: u32,
    ledctl: u32,
    pba: u32,
    icr: u32,
    itr: u32,
    ims: u32,
    rctl: u32,
    fcrtl: u32,
    fcrth: u32,
    rdbal: u32,
    rdbah: u32,
    rdlen: u32,
    rdh: u32,
    rdt: u32,
    rdtr: u32,
    rxdctl: u32,
    radv: u32,
    rsrpd: u32,
    rxcsum: u32,
    tctl: u32,
    tipg: u32,
    ait: u32,
    tdbal: u32,
    tdbah: u32,
    tdlen: u32,
    tdh: u32,
    tdt: u32,
    tidv: u32,
    txdctl: u32,
    tadv: u32,
    mdic: u32,
    eerd: u32,
}

pub struct E1000 {
    config: PciConfig,
    mac: [u8; 6],
    r: Regs,
    ra: [u32; 32],
    mta: [u32; 128],
    vfta: [u32; 128],
    eeprom: Eeprom,
    phy: Phy,
    stats: Stats,
    io_addr: u32,
    /// The last context descriptor, and how far the transmit worker
    /// has read (bhyve's TDHr: past TDH while a packet is incomplete).
    tx_ctx: TxContext,
    tdh_read: u32,
    irq_asserted: bool,
    /// End of the ITR window, on `clock`.
    itr_deadline: Option<u64>,
    clock: Arc<dyn Clock>,
    tx_gen: Arc<worker::Generation<worker::TxResult>>,
    rx_gen: Arc<worker::Generation<worker::RxProgress>>,
    kicks: Arc<Kicks>,
    workers: Workers,
}

impl E1000 {
    /// A function with `mac`, sending to and receiving from `backend`
    /// (none: frames are dropped and nothing arrives, as bhyve), its
    /// workers started.
    pub fn new_shared(
        mac: [u8; 6],
        backend: Option<Arc<dyn NetBackend>>,
        mem: GuestMemoryMmap,
    ) -> Result<Arc<Mutex<E1000>>, PciError> {
        Self::with_clock(mac, backend, mem, Arc::new(MonotonicClock::new()))
    }

    pub fn with_clock(
        mac: [u8; 6],
        backend: Option<Arc<dyn NetBackend>>,
        mem: GuestMemoryMmap,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Mutex<E1000>>, PciError> {
        let mut config = PciConfig::new(PciId {
            vendor: VENDOR_INTEL,
            device: DEVICE_82545EM_COPPER,
            revision: 0,
            class: 0x02,
            subclass: 0x00,
            prog_if: 0,
            subsystem_vendor: VENDOR_INTEL,
            subsystem: SUBDEVICE,
        });
        config.add_bar(REGISTER_BAR, BarKind::Mem32, REGISTER_BAR_LEN)?;
        config.add_bar(FLASH_BAR, BarKind::Mem32, FLASH_BAR_LEN)?;
        config.add_bar(IO_BAR, BarKind::Io, IO_BAR_LEN)?;
        config.add_msi(0)?;
        config.set_intpin(1);
        let ev = || EventFd::new(EFD_NONBLOCK).map_err(|_| PciError::BadBar(REGISTER_BAR));
        let kicks = Arc::new(Kicks {
            tx: ev()?,
            rx: ev()?,
            itr: ev()?,
            #[cfg(test)]
            dma_hook: Mutex::new(None),
        });
        if let Some(b) = &backend {
            // bhyve's e1000 does checksums and segmentation itself: the
            // backend hands over plain frames.
            if let Err(e) = b.set_offloads(0) {
                log::warn!("e1000: cannot turn the backend's offloads off: {e}");
            }
        }
        let dev = Arc::new(Mutex::new(E1000 {
            config,
            mac,
            r: Regs::default(),
            ra: [0; 32],
            mta: [0; 128],
            vfta: [0; 128],
            eeprom: Eeprom::new(mac, VENDOR_INTEL, DEVICE_82545EM_COPPER, SUBDEVICE),
            phy: Phy::default(),
            stats: Stats::default(),
            io_addr: 0,
            tx_ctx: TxContext::default(),
            tdh_read: 0,
            irq_asserted: false,
            itr_deadline: None,
            clock,
            tx_gen: Arc::default(),
            rx_gen: Arc::default(),
            kicks,
            workers: Workers::new(),
        }));
        {
            let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
            d.reset_state(false);
            let ctx = worker::WorkerCtx {
                dev: Arc::downgrade(&dev),
                kicks: d.kicks.clone(),
                mem,
                backend,
                tx_gen: d.tx_gen.clone(),
                rx_gen: d.rx_gen.clone(),
                clock: d.clock.clone(),
            };
            worker::start(&mut d.workers, ctx).map_err(|e| {
                log::error!("e1000: {e}");
                PciError::BadBar(REGISTER_BAR)
            })?;
        }
        Ok(dev)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// bhyve's `e82545_reset`: `software` is CTRL.RST, which keeps the
    /// flow-control, ring-base and filter registers a power-on clears.
    fn reset_state(&mut self, software: bool) {
        // The workers' unpublished progress goes with the rings' state.
        self.tx_gen.bump();
        self.rx_gen.bump();
        self.deassert();
        let keep = std::mem::take(&mut self.r);
        if software {
            self.r.fcal = keep.fcal;
            self.r.fcah = keep.fcah;
            self.r.fct = keep.fct;
            self.r.vet = keep.vet;
            self.r.fcttv = keep.fcttv;
            self.r.rdbal = keep.rdbal;
            self.r.rdbah = keep.rdbah;
            self.r.tdbal = keep.tdbal;
            self.r.tdbah = keep.tdbah;
            self.r.tipg = keep.tipg;
            self.r.ait = keep.ait;
            self.r.tidv = keep.tidv;
            self.r.tadv = keep.tadv;
            for rah in self.ra.iter_mut().skip(1).step_by(2) {
                *rah &= !RAH_AV;
            }
        } else {
            self.ra = [0; 32];
            self.mta = [0; 128];
            self.vfta = [0; 128];
            self.ra[0] = u32::from_le_bytes([self.mac[0], self.mac[1], self.mac[2], self.mac[3]]);
            self.ra[1] = u32::from(u16::from_le_bytes([self.mac[4], self.mac[5]])) | RAH_AV;
            self.stats.clear();
        }
        self.r.ledctl = 0x0706_1302;
        self.r.pba = 0x0010_0030;
        self.r.itr = 250;
        self.r.rxdctl = (1 << 24) | (1 << 16);
        self.eeprom.reset();
        self.phy.reset();
        self.tx_ctx = TxContext::default();
        self.tdh_read = 0;
        self.itr_deadline = None;
        self.irq_asserted = false;
    }

    // ---- interrupts (bhyve's e82545_icr_assert and friends) ----------

    fn assert(&mut self) {
        self.irq_asserted = true;
        // The INTx level follows the cause even while MSI is on (the
        // configuration gates the pin): a driver turning MSI off before
        // it read ICR gets INTx at once, and turning it on again drops
        // the pin. bhyve leaves INTx low until ICR is read.
        self.config.set_intx(true);
        self.config.raise_interrupt(0);
        if self.r.itr != 0 {
            let now = self.clock.now_ns();
            self.itr_deadline = Some(now + u64::from(self.r.itr) * ITR_UNIT_NS);
            kick(&self.kicks.itr);
        }
    }

    fn deassert(&mut self) {
        self.irq_asserted = false;
        self.config.set_intx(false);
    }

    /// New causes interrupt unless masked, already pending, or inside
    /// the ITR window (its end delivers them).
    fn icr_assert(&mut self, bits: u32) {
        let new = bits & !self.r.icr & self.r.ims;
        self.r.icr |= bits;
        if new != 0 && self.itr_deadline.is_none() && !self.irq_asserted {
            self.assert();
        }
    }

    fn ims_set(&mut self, bits: u32) {
        let new = bits & self.r.icr & !self.r.ims;
        self.r.ims |= bits;
        if new != 0 && self.itr_deadline.is_none() && !self.irq_asserted {
            self.assert();
        }
    }

    fn icr_clear(&mut self, bits: u32) {
        self.r.icr &= !bits;
        if self.irq_asserted && self.r.icr & self.r.ims == 0 {
            self.deassert();
        }
    }

    /// The end of an ITR window: causes that arrived in it interrupt now
    /// (opening a new window); with none, moderation idles.
    pub(crate) fn itr_expire(&mut self) -> Option<u64> {
        let deadline = self.itr_deadline?;
        if self.clock.now_ns() < deadline {
            return Some(deadline);
        }
        self.itr_deadline = None;
        if self.r.icr & self.r.ims != 0 && !self.irq_asserted {
            self.assert();
        }
        self.itr_deadline
    }

    // ---- registers ---------------------------------------------------

    fn tx_ring(&self) -> Ring {
        Ring {
            base: (u64::from(self.r.tdbah) << 32) | u64::from(self.r.tdbal),
            len: self.r.tdlen / 16,
        }
    }

    fn rx_ring(&self) -> Ring {
        Ring {
            base: (u64::from(self.r.rdbah) << 32) | u64::from(self.r.rdbal),
            len: self.r.rdlen / 16,
        }
    }

    fn write_rctl(&mut self, v: u32) {
        let was = self.r.rctl & RCTL_EN != 0;
        // bhyve strips the reserved bits 31:27, 24, 21, 14, 11:10 and 0.
        self.r.rctl = v & !0xf920_4c01;
        let on = v & RCTL_EN != 0;
        if was && !on {
            // Frames delivered before the disable stay delivered: RDH
            // moves over them, so a re-enable does not overwrite them.
            if let Some(p) = self.rx_gen.bump() {
                self.rx_publish(&p);
            }
        }
        kick(&self.kicks.rx);
    }

    fn write_tctl(&mut self, v: u32) {
        let was = self.r.tctl & TCTL_EN != 0;
        // bhyve strips the reserved bits 31:25, 23, 2 and 0.
        self.r.tctl = v & !0xfe80_0005;
        let on = v & TCTL_EN != 0;
        if was && !on {
            // Packets completed (DD written) before the disable stay
            // completed: TDH moves over them, so a re-enable does not
            // send them again.
            if let Some(p) = self.tx_gen.bump() {
                self.tx_publish(&p);
            }
        }
        if on {
            kick(&self.kicks.tx);
        }
    }

    fn write_mdic(&mut self, v: u32) {
        let reg = ((v >> MDIC_REG_SHIFT) & 0x1f) as u8;
        let mut m = v & !(MDIC_ERROR | MDIC_READY);
        match v & MDIC_OP_MASK {
            MDIC_OP_READ => {
                m = (m & !MDIC_DATA_MASK) | u32::from(self.phy.read(reg));
            }
            MDIC_OP_WRITE => self.phy.write(reg, (v & MDIC_DATA_MASK) as u16),
            _ => {
                self.r.mdic = m | MDIC_ERROR | MDIC_READY;
                return;
            }
        }
        self.r.mdic = m | MDIC_READY;
        if v & MDIC_IE != 0 {
            self.icr_assert(ICR_MDAC);
        }
    }

    pub(crate) fn write_register(&mut self, off: u32, v: u32) {
        if off & 3 != 0 {
            return;
        }
        let low16 = v & 0xffff;
        match off {
            CTRL | CTRL_DUP => {
                if v & CTRL_RST != 0 {
                    self.reset_state(true);
                }
                self.r.ctrl = v & !CTRL_RST;
            }
            CTRL_EXT => self.r.ctrl_ext = v,
            EECD => self.eeprom.write_eecd(v),
            EERD => self.r.eerd = self.eeprom.eerd(v),
            MDIC => self.write_mdic(v),
            FCAL => self.r.fcal = v,
            FCAH => self.r.fcah = low16,
            FCT => self.r.fct = low16,
            VET => self.r.vet = low16,
            FCTTV => self.r.fcttv = low16,
            TXCW => self.r.txcw = v & !0x3fff_0000,
            LEDCTL => self.r.ledctl = v & !0x3030_3000,
            PBA => self.r.pba = v & 0xff80,
            ICR => self.icr_clear(v),
            ITR => self.r.itr = low16,
            ICS => self.icr_assert(v),
            IMS => self.ims_set(v),
            IMC => {
                self.r.ims &= !v;
                // Nothing unmasked is pending any more: the line drops
                // (bhyve leaves it up until ICR is read).
                if self.irq_asserted && self.r.icr & self.r.ims == 0 {
                    self.deassert();
                }
            }
            RCTL => self.write_rctl(v),
            FCRTL => self.r.fcrtl = v & 0xfff8,
            FCRTH => self.r.fcrth = v & 0xfff8,
            RDBAL => self.r.rdbal = v & !0xf,
            RDBAH => self.r.rdbah = v,
            RDLEN => self.r.rdlen = v & 0x000f_ff80,
            RDH => {
                self.r.rdh = low16;
                self.rx_gen.bump();
            }
            RDT => {
                self.r.rdt = low16;
                kick(&self.kicks.rx);
            }
            RDTR => self.r.rdtr = low16,
            RXDCTL => self.r.rxdctl = v & !0xfec0_c0c0,
            RADV => self.r.radv = low16,
            RSRPD => self.r.rsrpd = v & 0xfff,
            RXCSUM => self.r.rxcsum = v & 0x7ff,
            TCTL => self.write_tctl(v),
            TIPG => self.r.tipg = v,
            AIT => self.r.ait = low16,
            TDBAL => self.r.tdbal = v & !0xf,
            TDBAH => self.r.tdbah = v,
            TDLEN => self.r.tdlen = v & 0x000f_ff80,
            TDH => {
                self.r.tdh = low16;
                self.tdh_read = low16;
                self.tx_gen.bump();
            }
            TDT => {
                self.r.tdt = low16;
                if self.r.tctl & TCTL_EN != 0 {
                    kick(&self.kicks.tx);
                }
            }
            TIDV => self.r.tidv = low16,
            TXDCTL => self.r.txdctl = v & !0x00c0_c0c0,
            TADV => self.r.tadv = low16,
            RAL0..RA_END => {
                let i = ((off - RAL0) / 4) as usize;
                self.ra[i] = if i % 2 == 1 { v & 0x8003_ffff } else { v };
            }
            MTA..RAL0 if off < MTA + 128 * 4 => self.mta[((off - MTA) / 4) as usize] = v,
            VFTA..MANC if off < VFTA + 128 * 4 => self.vfta[((off - VFTA) / 4) as usize] = v,
            _ => log::trace!("e1000: write of {v:#x} to register {off:#x} ignored"),
        }
    }

    pub(crate) fn read_register(&mut self, off: u32) -> u32 {
        if off & 3 != 0 {
            return 0;
        }
        match off {
            CTRL | CTRL_DUP => self.r.ctrl,
            STATUS => STATUS_FD | STATUS_LU | STATUS_SPEED_1000,
            EECD => self.eeprom.eecd(),
            EERD => self.r.eerd,
            CTRL_EXT => self.r.ctrl_ext,
            MDIC => self.r.mdic,
            FCAL => self.r.fcal,
            FCAH => self.r.fcah,
            FCT => self.r.fct,
            VET => self.r.vet,
            FCTTV => self.r.fcttv,
            TXCW => self.r.txcw,
            LEDCTL => self.r.ledctl,
            PBA => self.r.pba,
            ICR => {
                let v = self.r.icr;
                self.icr_clear(u32::MAX);
                v
            }
            ITR => self.r.itr,
            IMS => self.r.ims,
            RCTL => self.r.rctl,
            FCRTL => self.r.fcrtl,
            FCRTH => self.r.fcrth,
            RDBAL => self.r.rdbal,
            RDBAH => self.r.rdbah,
            RDLEN => self.r.rdlen,
            RDH => self.r.rdh,
            RDT => self.r.rdt,
            RDTR => self.r.rdtr,
            RXDCTL => self.r.rxdctl,
            RADV => self.r.radv,
            RSRPD => self.r.rsrpd,
            RXCSUM => self.r.rxcsum,
            TCTL => self.r.tctl,
            TIPG => self.r.tipg,
            AIT => self.r.ait,
            TDBAL => self.r.tdbal,
            TDBAH => self.r.tdbah,
            TDLEN => self.r.tdlen,
            TDH => self.r.tdh,
            TDT => self.r.tdt,
            TIDV => self.r.tidv,
            TXDCTL => self.r.txdctl,
            TADV => self.r.tadv,
            STATS_BASE..STATS_END => self.stats.read(((off - STATS_BASE) / 4) as usize),
            RAL0..RA_END => self.ra[((off - RAL0) / 4) as usize],
            MTA..RAL0 if off < MTA + 128 * 4 => self.mta[((off - MTA) / 4) as usize],
            VFTA..MANC if off < VFTA + 128 * 4 => self.vfta[((off - VFTA) / 4) as usize],
            _ => 0,
        }
    }

    // ---- the workers' view -------------------------------------------

    /// The transmit work to do now, if any.
    pub(crate) fn tx_job(&mut self) -> Option<worker::TxJob> {
        if self.r.tctl & TCTL_EN == 0 || self.tdh_read == self.r.tdt {
            return None;
        }
        let ring = self.tx_ring();
        if ring.len == 0 || self.r.tdh >= ring.len || self.r.tdt >= ring.len {
            // A ring the guest misconfigured: wait for its next TDT.
            log::debug!("e1000: transmit ring pointers outside the ring");
            self.tdh_read = self.r.tdt;
            return None;
        }
        Some(worker::TxJob {
            gen: self.tx_gen.get(),
            ring,
            head: self.r.tdh,
            tail: self.r.tdt,
            ctx: self.tx_ctx,
            params: TxParams {
                vlan_enable: self.r.ctrl & CTRL_VME != 0,
                vet: self.r.vet as u16,
            },
        })
    }

    pub(crate) fn tx_done(&mut self, job: &worker::TxJob, out: &worker::TxResult) {
        if self.tx_gen.finish(job.gen) {
            self.tx_publish(out);
        }
    }

    fn tx_publish(&mut self, out: &worker::TxResult) {
        self.r.tdh = out.head;
        self.tdh_read = out.read_head;
        self.tx_ctx = out.ctx;
        self.stats.merge(&out.stats);
        let mut cause = 0;
        if out.wrote_back {
            cause |= ICR_TXDW;
        }
        if out.consumed && self.r.tdh == self.r.tdt {
            cause |= ICR_TXQE;
        }
        if cause != 0 {
            self.icr_assert(cause);
        }
    }

    pub(crate) fn rx_job(&mut self) -> worker::RxJob {
        if self.r.rctl & RCTL_EN == 0 || self.r.rctl & RCTL_LBM_MASK != 0 {
            return worker::RxJob::Disabled;
        }
        let ring = self.rx_ring();
        if ring.len == 0 || self.r.rdh >= ring.len || self.r.rdt >= ring.len {
            return worker::RxJob::NoRoom;
        }
        let rctl = self.r.rctl;
        let room = ring.distance(self.r.rdh, self.r.rdt);
        if room < rx::descs_per_packet(rctl) {
            return worker::RxJob::NoRoom;
        }
        worker::RxJob::Ready(Box::new(worker::RxBatch {
            gen: self.rx_gen.get(),
            ring,
            head: self.r.rdh,
            tail: self.r.rdt,
            rsrpd: self.r.rsrpd as usize,
            filter: RxFilter {
                rctl,
                ra: self.ra,
                mta: self.mta,
                vfta: self.vfta,
                vet: self.r.vet as u16,
            },
        }))
    }

    /// A receive batch of generation `gen` that began at `head` ends.
    pub(crate) fn rx_done(&mut self, gen: u64, head: u32, p: &worker::RxProgress) {
        if !self.rx_gen.finish(gen) {
            return;
        }
        if p.head == head && p.cause == 0 {
            // Nothing delivered: only drops to count.
            self.stats.merge(&p.stats);
            return;
        }
        self.rx_publish(p);
    }

    fn rx_publish(&mut self, p: &worker::RxProgress) {
        self.stats.merge(&p.stats);
        self.r.rdh = p.head;
        let mut cause = p.cause;
        let ring = p.ring;
        let left = ring.distance(p.head, self.r.rdt);
        let shift = ((self.r.rctl >> RCTL_RDMTS_SHIFT) & 3) + 1;
        if left < ring.len >> shift {
            cause |= ICR_RXDMT0;
        }
        if cause != 0 {
            self.icr_assert(cause);
        }
    }

    fn bar_dword(data: &[u8]) -> Option<u32> {
        (data.len() == 4).then(|| u32::from_le_bytes(data.try_into().expect("4 bytes")))
    }
}

impl PciDevice for E1000 {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        // bhyve answers 32-bit accesses only; others read 0.
        let v = match (bar, offset, data.len()) {
            (REGISTER_BAR, o, 4) if o < REGISTER_BAR_LEN => self.read_register(o as u32),
            (IO_BAR, IOADDR, 4) => self.io_addr,
            (IO_BAR, IODATA, 4) if self.io_addr <= IO_REGISTER_MAX => {
                let a = self.io_addr;
                self.read_register(a)
            }
            _ => 0,
        };
        put_le(data, v.into());
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        let Some(v) = Self::bar_dword(data) else {
            log::trace!("e1000: {}-byte write to BAR {bar} ignored", data.len());
            return;
        };
        match (bar, offset) {
            (REGISTER_BAR, o) if o < REGISTER_BAR_LEN => self.write_register(o as u32, v),
            (IO_BAR, IOADDR) => self.io_addr = v,
            (IO_BAR, IODATA) if self.io_addr <= IO_REGISTER_MAX => {
                let a = self.io_addr;
                self.write_register(a, v);
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.reset_state(false);
    }
}

impl Drop for E1000 {
    fn drop(&mut self) {
        self.workers.stop();
    }
}

/// The workers reach the function through this (a dropped function ends
/// them).
pub(crate) type Shared = Weak<Mutex<E1000>>;
