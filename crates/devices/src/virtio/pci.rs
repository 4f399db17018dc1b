//! virtio over PCI: a transitional function, as QEMU offers them, with
//! bhyve's legacy layout.
//!
//! - BAR 0 (I/O): the legacy registers, then the device configuration
//!   (bhyve's only interface; what old drivers and firmware use).
//! - BAR 1 (memory): the MSI-X table and PBA, one vector per queue plus
//!   one for configuration changes (bhyve's choice of BAR). With
//!   `virtio_msix=false` (`-W`) the function has a single MSI vector
//!   instead.
//! - BAR 4 (64-bit memory): the modern structures the vendor capabilities
//!   point at: common configuration, ISR, device configuration and
//!   notifications (QEMU's layout), plus the configuration-space window
//!   (`VIRTIO_PCI_CAP_PCI_CFG`) the specification requires.
//!
//! Notifications are doorbells: KVM signals the queue's kick eventfd
//! directly; a write that arrives through the bus kicks it the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::Duration;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::transport::{legacy, Effect, Transport, ISR_CONFIG, ISR_QUEUE};
use super::{
    status, Activation, ActiveQueues, VirtioDevice, VirtioInterrupt, F_RING_EVENT_IDX,
    F_RING_INDIRECT_DESC, F_VERSION_1, NO_VECTOR, VIRTIO_VENDOR,
};
use crate::pci::config::{BarKind, PciConfig, PciError, PciId};
use crate::pci::{put_le, DoorbellSpace, Doorbells, PciDevice};
use virtio_queue::QueueT;

pub const LEGACY_BAR: u8 = 0;
pub const MSIX_BAR: u8 = 1;
pub const MODERN_BAR: u8 = 4;

/// BAR 4's regions (QEMU's): 4 KiB each.
const COMMON_OFF: u64 = 0x0000;
const ISR_OFF: u64 = 0x1000;
const DEVICE_OFF: u64 = 0x2000;
const NOTIFY_OFF: u64 = 0x3000;
const REGION: u64 = 0x1000;
const MODERN_BAR_SIZE: u64 = 0x4000;
/// Bytes between two queues' notify addresses.
const NOTIFY_MULTIPLIER: u32 = 4;

/// Vendor capability types (virtio 1.x §4.1.4).
const CAP_VENDOR: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
const CAP_PCI_CFG: u8 = 5;

/// Transitional PCI device IDs by device type (virtio 1.x §4.1.2.3).
fn transitional_id(device_type: u16) -> Option<u16> {
    use super::types::*;
    Some(match device_type {
        NET => 0x1000,
        BLOCK => 0x1001,
        CONSOLE => 0x1003,
        SCSI => 0x1004,
        RNG => 0x1005,
        P9 => 0x1009,
        _ => return None,
    })
}

/// How the function signals: fixed at creation (`virtio_msix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqMode {
    MsiX,
    Msi,
}

pub struct VirtioPci {
    config: PciConfig,
    transport: Transport,
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    kicks: Vec<Arc<EventFd>>,
    doorbells: Option<Arc<dyn Doorbells>>,
    /// Where BAR 0 and BAR 4 are decoded, for their doorbells.
    legacy_base: Option<u64>,
    modern_base: Option<u64>,
    legacy: bool,
    nvec: u16,
    pci_cfg_cap: u16,
    active: Option<Arc<ActiveQueues>>,
    /// Counts activations; interrupts of an older one are dropped.
    generation: u64,
    this: Weak<Mutex<VirtioPci>>,
}

/// The interrupt handle a device's workers get.
struct PciIrq {
    func: Weak<Mutex<VirtioPci>>,
    generation: u64,
    /// The activation's stop flag ([`ActiveQueues::stop`]).
    stopped: Arc<AtomicBool>,
}

impl PciIrq {
    /// The function, unless the activation stops while we wait for it.
    /// A reset holds the function while it waits for the device's
    /// requests held by the backend (virtio-blk, virtio-scsi): a
    /// completion blocked here would keep its backend thread from the
    /// device's other requests, so the reset would wait for itself. Once
    /// stopped the interrupt is moot: the driver reset the device.
    fn lock_live<'a>(&self, func: &'a Mutex<VirtioPci>) -> Option<MutexGuard<'a, VirtioPci>> {
        let mut tries = 0u32;
        loop {
            match func.try_lock() {
                Ok(g) => return Some(g),
                Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            if self.stopped.load(Ordering::Acquire) {
                return None;
            }
            // The function is held for a register access (short): spin
            // politely first, then sleep in case it is a long one.
            tries += 1;
            if tries < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

impl VirtioInterrupt for PciIrq {
    fn signal_used(&self, queue: u16) {
        if let Some(f) = self.func.upgrade() {
            let Some(mut f) = self.lock_live(&f) else {
                return;
            };
            if f.generation == self.generation && f.active.is_some() {
                let v = f.transport.queue_vector(queue);
                f.interrupt(v, ISR_QUEUE);
            }
        }
    }

    fn signal_config(&self) {
        if let Some(f) = self.func.upgrade() {
            let Some(mut f) = self.lock_live(&f) else {
                return;
            };
            if f.generation == self.generation {
                f.config_changed();
            }
        }
    }
}

fn align_pow2(n: u64) -> u64 {
    n.max(4).next_power_of_two()
}

impl VirtioPci {
    /// A function for `device`, shared (its workers reach it for
    /// interrupts). `doorbells`: KVM's ioeventfds, when available.
    pub fn new_shared(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        mode: IrqMode,
        doorbells: Option<Arc<dyn Doorbells>>,
    ) -> Result<Arc<Mutex<VirtioPci>>, PciError> {
        let dtype = device.device_type();
        let legacy_id = transitional_id(dtype);
        let (class, subclass, prog_if) = device.pci_class();
        let mut config = PciConfig::new(PciId {
            vendor: VIRTIO_VENDOR,
            device: legacy_id.unwrap_or(0x1040 + dtype),
            // Revision 0 marks a transitional device, 1 a modern-only one.
            revision: if legacy_id.is_some() { 0 } else { 1 },
            class,
            subclass,
            prog_if,
            subsystem_vendor: VIRTIO_VENDOR,
            subsystem: dtype,
        });
        let nq = device.queue_sizes().len();
        let nvec = match mode {
            IrqMode::MsiX => nq as u16 + 1,
            IrqMode::Msi => 1,
        };
        let cfg_size = device.config_size() as u64;
        if legacy_id.is_some() {
            config.add_bar(
                LEGACY_BAR,
                BarKind::Io,
                align_pow2(legacy::CONFIG_MSIX + cfg_size),
            )?;
        }
        match mode {
            IrqMode::MsiX => {
                let table = u64::from(nvec) * 16;
                let pba = table.div_ceil(4096) * 4096;
                let size = align_pow2(pba + 4096);
                config.add_bar(MSIX_BAR, BarKind::Mem32, size)?;
                config.add_msix(nvec, (MSIX_BAR, 0), (MSIX_BAR, pba))?;
            }
            IrqMode::Msi => {
                config.add_msi(0)?;
            }
        }
        config.add_bar(MODERN_BAR, BarKind::Mem64, MODERN_BAR_SIZE)?;
        let vcap = |cfg: &mut PciConfig, ty: u8, off: u64, len: u64, extra: &[u8], wmask: &[u8]| {
            // cap_len, cfg_type, bar, id, padding[2], offset, length.
            let mut body = vec![(16 + extra.len()) as u8, ty, MODERN_BAR, 0, 0, 0];
            body.extend_from_slice(&(off as u32).to_le_bytes());
            body.extend_from_slice(&(len as u32).to_le_bytes());
            body.extend_from_slice(extra);
            cfg.add_capability(CAP_VENDOR, &body, wmask)
        };
        vcap(
            &mut config,
            CAP_COMMON,
            COMMON_OFF,
            super::transport::common::LEN,
            &[],
            &[],
        )?;
        vcap(
            &mut config,
            CAP_NOTIFY,
            NOTIFY_OFF,
            (nq as u64 * u64::from(NOTIFY_MULTIPLIER)).max(4),
            &NOTIFY_MULTIPLIER.to_le_bytes(),
            &[],
        )?;
        vcap(&mut config, CAP_ISR, ISR_OFF, 1, &[], &[])?;
        if cfg_size > 0 {
            vcap(
                &mut config,
                CAP_DEVICE,
                DEVICE_OFF,
                cfg_size.min(REGION),
                &[],
                &[],
            )?;
        }
        // The window: bar (byte 4), offset and length are the driver's.
        let mut wmask = vec![0u8; 18];
        wmask[2] = 0xff;
        wmask[6..14].fill(0xff);
        let pci_cfg_cap = vcap(&mut config, CAP_PCI_CFG, 0, 0, &[0; 4], &wmask)?;
        // Byte 4 (bar) of the window is not set by vcap for this one.
        config.set_byte(pci_cfg_cap as u8 + 4, 0);
        config.set_intpin(1);

        let features = device.features() | F_RING_INDIRECT_DESC | F_RING_EVENT_IDX | F_VERSION_1;
        let transport = Transport::new(features, device.queue_sizes());
        let mut kicks = Vec::with_capacity(nq);
        for _ in 0..nq {
            kicks.push(Arc::new(
                EventFd::new(EFD_NONBLOCK).map_err(|_| PciError::BadBar(MODERN_BAR))?,
            ));
        }
        Ok(Arc::new_cyclic(|this| {
            Mutex::new(VirtioPci {
                config,
                transport,
                device,
                mem,
                kicks,
                doorbells,
                legacy_base: None,
                modern_base: None,
                legacy: legacy_id.is_some(),
                nvec: if mode == IrqMode::MsiX { nvec } else { 0 },
                pci_cfg_cap,
                active: None,
                generation: 0,
                this: this.clone(),
            })
        }))
    }

    /// Raises `vector` (MSI-X), or sets `isr_bit` and raises MSI or INTx.
    fn interrupt(&mut self, vector: u16, isr_bit: u8) {
        if self.config.msix_enabled() {
            if vector != NO_VECTOR {
                self.config.raise_interrupt(vector);
            }
            return;
        }
        self.transport.isr |= isr_bit;
        if !self.config.raise_interrupt(0) {
            self.config.set_intx(true);
        }
    }

    fn config_changed(&mut self) {
        self.transport.config_generation = self.transport.config_generation.wrapping_add(1);
        let v = self.transport.config_vector;
        self.interrupt(v, ISR_CONFIG);
    }

    fn read_isr(&mut self) -> u8 {
        let v = self.transport.isr;
        self.transport.isr = 0;
        self.config.set_intx(false);
        v
    }

    fn kick(&self, q: u16) {
        if let Some(k) = self.kicks.get(q as usize) {
            let _ = k.write(1);
        }
    }

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::None => {}
            Effect::Notify(q) => self.kick(q),
            Effect::Status { old, new } => {
                if new == 0 {
                    self.reset_device();
                } else if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
                    self.activate();
                }
            }
        }
    }

    fn activate(&mut self) {
        // DRIVER_OK again without a reset (a driver that cleared the bit):
        // the previous activation ends first, so no two workers share a ring.
        if let Some(aq) = self.active.take() {
            aq.stop();
            self.device.reset();
        }
        let queues = match self.transport.build_queues() {
            Ok(q) => q,
            Err(e) => return self.fail(&e),
        };
        for (i, q) in queues.iter().enumerate() {
            if q.ready() && !q.is_valid(&self.mem) {
                return self.fail(&format!("queue {i} lies outside guest memory"));
            }
        }
        self.generation += 1;
        let stopped = Arc::new(AtomicBool::new(false));
        let irq = Arc::new(PciIrq {
            func: self.this.clone(),
            generation: self.generation,
            stopped: stopped.clone(),
        });
        let aq = Arc::new(ActiveQueues::with_stop_flag(
            queues,
            self.kicks.clone(),
            irq,
            stopped,
        ));
        self.active = Some(aq.clone());
        let act = Activation {
            mem: self.mem.clone(),
            queues: aq,
            // A driver may set DRIVER_OK without FEATURES_OK: never pass on
            // bits we did not offer.
            features: self.transport.driver_features & self.transport.device_features(),
        };
        if let Err(e) = self.device.activate(act) {
            self.fail(&e);
        }
    }

    /// The device cannot go on: NEEDS_RESET, and the driver is told.
    fn fail(&mut self, why: &str) {
        log::warn!(
            "virtio {:04x}: {why}; the device needs a reset",
            self.config.vendor_device().1
        );
        if let Some(aq) = self.active.take() {
            aq.stop();
            self.device.reset();
        }
        self.transport.status |= status::NEEDS_RESET;
        self.config_changed();
    }

    fn reset_device(&mut self) {
        if let Some(aq) = self.active.take() {
            aq.stop();
            self.device.reset();
        }
        self.transport.reset();
        self.config.set_intx(false);
    }

    fn device_config_read(&mut self, off: u64, data: &mut [u8]) {
        let size = self.device.config_size() as u64;
        if off >= size {
            data.fill(0);
            return;
        }
        self.device.read_config(off, data);
    }

    fn legacy_read(&mut self, off: u64, data: &mut [u8]) {
        let cfg = self.legacy_config_offset();
        if off >= cfg {
            return self.device_config_read(off - cfg, data);
        }
        if off == legacy::ISR {
            let v = self.read_isr();
            return put_le(data, v.into());
        }
        self.transport.legacy_read(off, data);
    }

    fn legacy_config_offset(&self) -> u64 {
        if self.config.msix_enabled() {
            legacy::CONFIG_MSIX
        } else {
            legacy::CONFIG_NO_MSIX
        }
    }

    fn legacy_write(&mut self, off: u64, data: &[u8]) {
        let cfg = self.legacy_config_offset();
        if off >= cfg {
            return self.device.write_config(off - cfg, data);
        }
        let e = self.transport.legacy_write(off, data, self.nvec);
        self.apply(e);
    }

    fn modern_read(&mut self, off: u64, data: &mut [u8]) {
        match off {
            COMMON_OFF..ISR_OFF => self.transport.common_read(off - COMMON_OFF, data),
            ISR_OFF => {
                let v = self.read_isr();
                put_le(data, v.into());
            }
            DEVICE_OFF..NOTIFY_OFF => self.device_config_read(off - DEVICE_OFF, data),
            _ => data.fill(0),
        }
    }

    fn modern_write(&mut self, off: u64, data: &[u8]) {
        match off {
            COMMON_OFF..ISR_OFF => {
                let e = self
                    .transport
                    .common_write(off - COMMON_OFF, data, self.nvec);
                self.apply(e);
            }
            DEVICE_OFF..NOTIFY_OFF if off - DEVICE_OFF < self.device.config_size() as u64 => {
                self.device.write_config(off - DEVICE_OFF, data);
            }
            NOTIFY_OFF.. => {
                let q = (off - NOTIFY_OFF) / u64::from(NOTIFY_MULTIPLIER);
                if q < self.kicks.len() as u64 {
                    self.kick(q as u16);
                }
            }
            _ => {}
        }
    }

    fn doorbells(&self, bar: u8, base: u64, on: bool) {
        let Some(db) = &self.doorbells else { return };
        for (q, k) in self.kicks.iter().enumerate() {
            let (space, addr, len, dm) = if bar == LEGACY_BAR {
                let a = base + legacy::QUEUE_NOTIFY;
                (DoorbellSpace::Pio, a, 2, Some(q as u64))
            } else {
                let a = base + NOTIFY_OFF + q as u64 * u64::from(NOTIFY_MULTIPLIER);
                (DoorbellSpace::Mmio, a, 0, None)
            };
            let r = if on {
                db.register(space, addr, len, dm, k)
            } else {
                db.unregister(space, addr, len, dm, k)
            };
            if let Err(e) = r {
                log::debug!("virtio doorbell {q} at {addr:#x}: {e}");
            }
        }
    }

    /// The `VIRTIO_PCI_CAP_PCI_CFG` window: an access to its data field
    /// reaches the BAR it names.
    fn pci_cfg_access(
        &mut self,
        offset: u16,
        read: Option<&mut [u8]>,
        write: Option<&[u8]>,
    ) -> bool {
        let cap = self.pci_cfg_cap;
        if offset != cap + 16 {
            return false;
        }
        let mut b = [0u8; 4];
        self.config.read(cap + 4, &mut b[..1]);
        let bar = b[0];
        self.config.read(cap + 8, &mut b);
        let off = u64::from(u32::from_le_bytes(b));
        self.config.read(cap + 12, &mut b);
        let len = u32::from_le_bytes(b) as usize;
        let bar_size = self.config.bar_size(bar);
        let ok = matches!(len, 1 | 2 | 4)
            && (bar == LEGACY_BAR || bar == MODERN_BAR)
            && off.checked_add(len as u64).is_some_and(|e| e <= bar_size);
        match (read, write) {
            (Some(data), _) => {
                let mut v = [0u8; 4];
                if ok {
                    self.bar_read(bar, off, &mut v[..len]);
                }
                let n = data.len().min(4);
                data[..n].copy_from_slice(&v[..n]);
            }
            (None, Some(data)) if ok && data.len() >= len => {
                self.bar_write(bar, off, &data[..len]);
            }
            _ => {}
        }
        true
    }

    /// The interrupt mode a `virtio_msix` setting selects.
    pub fn irq_mode(msix: bool) -> IrqMode {
        if msix {
            IrqMode::MsiX
        } else {
            IrqMode::Msi
        }
    }

    /// Whether the device is running (tests).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

impl PciDevice for VirtioPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            LEGACY_BAR if self.legacy => self.legacy_read(offset, data),
            MODERN_BAR => self.modern_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            LEGACY_BAR if self.legacy => self.legacy_write(offset, data),
            MODERN_BAR => self.modern_write(offset, data),
            _ => {}
        }
    }

    fn cfg_read(&mut self, offset: u16, data: &mut [u8]) -> bool {
        self.pci_cfg_access(offset, Some(data), None)
    }

    fn cfg_write(&mut self, offset: u16, data: &[u8]) -> bool {
        self.pci_cfg_access(offset, None, Some(data))
    }

    fn reset(&mut self) {
        self.reset_device();
    }

    fn bar_mapped(&mut self, bar: u8, base: Option<u64>) {
        let slot = match bar {
            LEGACY_BAR if self.legacy => &mut self.legacy_base,
            MODERN_BAR => &mut self.modern_base,
            _ => return,
        };
        let old = std::mem::replace(slot, base);
        if let Some(old) = old {
            self.doorbells(bar, old, false);
        }
        if let Some(new) = base {
            self.doorbells(bar, new, true);
        }
    }
}

impl Drop for VirtioPci {
    fn drop(&mut self) {
        if let Some(aq) = self.active.take() {
            aq.stop();
            self.device.reset();
        }
    }
}
