//! The virtio registers every interface shares (feature negotiation,
//! status, queue set-up, MSI-X vectors, ISR), accessed through the
//! legacy 0.9.5 I/O layout bhyve offers and the modern 1.x common
//! configuration structure. No guest memory is touched here: queues are
//! only described, and checked when the device is activated.

use super::{status, F_RING_EVENT_IDX, F_VERSION_1, NO_VECTOR};
use virtio_queue::{Queue, QueueT};

/// Legacy I/O BAR registers (virtio 0.9.5, bhyve's `VTCFG_R_*`).
pub mod legacy {
    pub const HOST_FEATURES: u64 = 0;
    pub const GUEST_FEATURES: u64 = 4;
    pub const QUEUE_PFN: u64 = 8;
    pub const QUEUE_NUM: u64 = 12;
    pub const QUEUE_SEL: u64 = 14;
    pub const QUEUE_NOTIFY: u64 = 16;
    pub const STATUS: u64 = 18;
    pub const ISR: u64 = 19;
    /// Present only while MSI-X is enabled; the device configuration
    /// follows them (at 24), or follows ISR (at 20) otherwise.
    pub const CONFIG_VECTOR: u64 = 20;
    pub const QUEUE_VECTOR: u64 = 22;
    pub const CONFIG_MSIX: u64 = 24;
    pub const CONFIG_NO_MSIX: u64 = 20;
    /// Legacy rings are page-aligned, in 4 KiB pages.
    pub const PFN_SHIFT: u32 = 12;
    pub const VRING_ALIGN: u64 = 4096;
}

/// Modern common configuration offsets (virtio 1.x §4.1.4.3).
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0;
    pub const DEVICE_FEATURE: u64 = 4;
    pub const DRIVER_FEATURE_SELECT: u64 = 8;
    pub const DRIVER_FEATURE: u64 = 12;
    pub const MSIX_CONFIG: u64 = 16;
    pub const NUM_QUEUES: u64 = 18;
    pub const DEVICE_STATUS: u64 = 20;
    pub const CONFIG_GENERATION: u64 = 21;
    pub const QUEUE_SELECT: u64 = 22;
    pub const QUEUE_SIZE: u64 = 24;
    pub const QUEUE_MSIX_VECTOR: u64 = 26;
    pub const QUEUE_ENABLE: u64 = 28;
    pub const QUEUE_NOTIFY_OFF: u64 = 30;
    pub const QUEUE_DESC: u64 = 32;
    pub const QUEUE_DRIVER: u64 = 40;
    pub const QUEUE_DEVICE: u64 = 48;
    pub const LEN: u64 = 56;
}

/// ISR bits.
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

#[derive(Debug, Clone, Copy, Default)]
pub struct QueueConfig {
    pub max_size: u16,
    pub size: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub vector: u16,
    /// The legacy page frame number last written.
    pub pfn: u32,
}

/// What a register write asks the transport to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The driver wrote the status register (0: reset).
    Status {
        old: u8,
        new: u8,
    },
    /// Queue notify through the register (the doorbell's slow path).
    Notify(u16),
}

pub struct Transport {
    device_features: u64,
    pub driver_features: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    pub status: u8,
    pub isr: u8,
    pub config_generation: u8,
    queue_select: u16,
    pub queues: Vec<QueueConfig>,
    pub config_vector: u16,
}

fn get(v: u64, off: u64, data: &mut [u8]) {
    let b = v.to_le_bytes();
    for (i, d) in data.iter_mut().enumerate() {
        *d = b.get(off as usize + i).copied().unwrap_or(0);
    }
}

/// Merges an access of `data.len()` bytes at byte `off` of a register
/// into its old value.
fn put(old: u64, off: u64, data: &[u8]) -> u64 {
    let mut b = old.to_le_bytes();
    for (i, d) in data.iter().enumerate() {
        if let Some(x) = b.get_mut(off as usize + i) {
            *x = *d;
        }
    }
    u64::from_le_bytes(b)
}

impl Transport {
    pub fn new(device_features: u64, queue_sizes: &[u16]) -> Self {
        Transport {
            device_features,
            driver_features: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            status: 0,
            isr: 0,
            config_generation: 0,
            queue_select: 0,
            queues: queue_sizes
                .iter()
                .map(|&max_size| QueueConfig {
                    max_size,
                    size: max_size,
                    vector: NO_VECTOR,
                    ..QueueConfig::default()
                })
                .collect(),
            config_vector: NO_VECTOR,
        }
    }

    pub fn device_features(&self) -> u64 {
        self.device_features
    }

    /// Back to the state after power-on (status 0).
    pub fn reset(&mut self) {
        *self = Transport {
            config_generation: self.config_generation,
            ..Transport::new(
                self.device_features,
                &self.queues.iter().map(|q| q.max_size).collect::<Vec<_>>(),
            )
        };
    }

    fn selected(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(self.queue_select as usize)
    }

    pub fn queue_vector(&self, q: u16) -> u16 {
        self.queues.get(q as usize).map_or(NO_VECTOR, |q| q.vector)
    }

    /// A vector register write: values beyond the function's vectors read
    /// back as NO_VECTOR, telling the driver the mapping failed.
    fn vector(v: u16, nvec: u16) -> u16 {
        if v < nvec {
            v
        } else {
            NO_VECTOR
        }
    }

    fn write_status(&mut self, v: u8) -> Effect {
        let old = self.status;
        let mut new = v;
        // FEATURES_OK sticks only if the driver asked for nothing we lack.
        if new & status::FEATURES_OK != 0
            && old & status::FEATURES_OK == 0
            && self.driver_features & !self.device_features != 0
        {
            new &= !status::FEATURES_OK;
        }
        self.status = new;
        Effect::Status { old, new }
    }

    /// The driver accepted EVENT_IDX.
    pub fn event_idx(&self) -> bool {
        self.driver_features & F_RING_EVENT_IDX != 0
    }

    /// A legacy register read (`off` below the device configuration).
    /// ISR reads clear it (the caller then lowers INTx).
    pub fn legacy_read(&mut self, off: u64, data: &mut [u8]) {
        use legacy::*;
        let q = self.queues.get(self.queue_select as usize).copied();
        let (base, v): (u64, u64) = match off {
            0..=3 => (HOST_FEATURES, self.device_features & 0xffff_ffff),
            4..=7 => (GUEST_FEATURES, self.driver_features & 0xffff_ffff),
            8..=11 => (QUEUE_PFN, q.map_or(0, |q| q.pfn.into())),
            12..=13 => (QUEUE_NUM, q.map_or(0, |q| q.max_size.into())),
            14..=15 => (QUEUE_SEL, self.queue_select.into()),
            16..=17 => (QUEUE_NOTIFY, 0),
            18 => (STATUS, self.status.into()),
            19 => {
                let v = self.isr;
                self.isr = 0;
                (ISR, v.into())
            }
            20..=21 => (CONFIG_VECTOR, self.config_vector.into()),
            22..=23 => (QUEUE_VECTOR, q.map_or(NO_VECTOR, |q| q.vector).into()),
            _ => (off, 0),
        };
        get(v, off - base, data);
    }

    /// A legacy register write. `nvec`: MSI-X vectors of the function.
    pub fn legacy_write(&mut self, off: u64, data: &[u8], nvec: u16) -> Effect {
        use legacy::*;
        match off {
            4..=7 => {
                let v = put(self.driver_features & 0xffff_ffff, off - 4, data);
                // A legacy driver never sees the high feature bits.
                self.driver_features = v & self.device_features & 0xffff_ffff;
            }
            8..=11 => {
                let Some(q) = self.selected() else {
                    return Effect::None;
                };
                let pfn = put(q.pfn.into(), off - 8, data) as u32;
                q.pfn = pfn;
                if pfn == 0 {
                    q.enabled = false;
                } else {
                    // The legacy layout: descriptors, then the avail
                    // ring (with used_event), then the used ring on the
                    // next page boundary.
                    let n = u64::from(q.max_size);
                    q.size = q.max_size;
                    q.desc = u64::from(pfn) << PFN_SHIFT;
                    q.driver = q.desc + 16 * n;
                    q.device = (q.driver + 2 * (3 + n)).div_ceil(VRING_ALIGN) * VRING_ALIGN;
                    q.enabled = true;
                }
            }
            14..=15 => self.queue_select = put(self.queue_select.into(), off - 14, data) as u16,
            16..=17 => {
                return Effect::Notify(put(0, off - 16, data) as u16);
            }
            18 => return self.write_status(data[0]),
            20..=21 => {
                let v = put(self.config_vector.into(), off - 20, data) as u16;
                self.config_vector = Self::vector(v, nvec);
            }
            22..=23 => {
                if let Some(q) = self.selected() {
                    let v = put(q.vector.into(), off - 22, data) as u16;
                    q.vector = Self::vector(v, nvec);
                }
            }
            _ => {}
        }
        Effect::None
    }

    /// A modern common-configuration read.
    pub fn common_read(&mut self, off: u64, data: &mut [u8]) {
        use common::*;
        let qs = self.queue_select;
        let q = self.queues.get(qs as usize).copied();
        let (base, v): (u64, u64) = match off {
            0..=3 => (DEVICE_FEATURE_SELECT, self.device_feature_select.into()),
            4..=7 => (
                DEVICE_FEATURE,
                match self.device_feature_select {
                    0 => self.device_features & 0xffff_ffff,
                    1 => self.device_features >> 32,
                    _ => 0,
                },
            ),
            8..=11 => (DRIVER_FEATURE_SELECT, self.driver_feature_select.into()),
            12..=15 => (
                DRIVER_FEATURE,
                match self.driver_feature_select {
                    0 => self.driver_features & 0xffff_ffff,
                    1 => self.driver_features >> 32,
                    _ => 0,
                },
            ),
            16..=17 => (MSIX_CONFIG, self.config_vector.into()),
            18..=19 => (NUM_QUEUES, self.queues.len() as u64),
            20 => (DEVICE_STATUS, self.status.into()),
            21 => (CONFIG_GENERATION, self.config_generation.into()),
            22..=23 => (QUEUE_SELECT, qs.into()),
            24..=25 => (QUEUE_SIZE, q.map_or(0, |q| q.size.into())),
            26..=27 => (QUEUE_MSIX_VECTOR, q.map_or(NO_VECTOR, |q| q.vector).into()),
            28..=29 => (QUEUE_ENABLE, q.map_or(0, |q| q.enabled.into())),
            30..=31 => (QUEUE_NOTIFY_OFF, if q.is_some() { qs.into() } else { 0 }),
            32..=39 => (QUEUE_DESC, q.map_or(0, |q| q.desc)),
            40..=47 => (QUEUE_DRIVER, q.map_or(0, |q| q.driver)),
            48..=55 => (QUEUE_DEVICE, q.map_or(0, |q| q.device)),
            _ => (off, 0),
        };
        get(v, off - base, data);
    }

    /// A modern common-configuration write.
    pub fn common_write(&mut self, off: u64, data: &[u8], nvec: u16) -> Effect {
        let running = self.status & status::DRIVER_OK != 0;
        match off {
            0..=3 => {
                self.device_feature_select =
                    put(self.device_feature_select.into(), off, data) as u32
            }
            8..=11 => {
                self.driver_feature_select =
                    put(self.driver_feature_select.into(), off - 8, data) as u32
            }
            // Features are frozen once FEATURES_OK is set.
            12..=15 if self.status & status::FEATURES_OK == 0 => {
                let shift = match self.driver_feature_select {
                    0 => 0,
                    1 => 32,
                    _ => return Effect::None,
                };
                let half = (self.driver_features >> shift) & 0xffff_ffff;
                let v = put(half, off - 12, data) & 0xffff_ffff;
                self.driver_features =
                    (self.driver_features & !(0xffff_ffff << shift)) | (v << shift);
            }
            16..=17 => {
                let v = put(self.config_vector.into(), off - 16, data) as u16;
                self.config_vector = Self::vector(v, nvec);
            }
            20 => return self.write_status(data[0]),
            22..=23 => self.queue_select = put(self.queue_select.into(), off - 22, data) as u16,
            24..=55 => {
                let Some(q) = self.selected() else {
                    return Effect::None;
                };
                match off {
                    24..=25 if !running => q.size = put(q.size.into(), off - 24, data) as u16,
                    26..=27 => {
                        let v = put(q.vector.into(), off - 26, data) as u16;
                        q.vector = Self::vector(v, nvec);
                    }
                    // Writing 0 is not allowed (virtio 1.x); ignore it.
                    28..=29 if !running => q.enabled |= put(0, off - 28, data) & 1 != 0,
                    32..=39 if !running => q.desc = put(q.desc, off - 32, data),
                    40..=47 if !running => q.driver = put(q.driver, off - 40, data),
                    48..=55 if !running => q.device = put(q.device, off - 48, data),
                    _ => {}
                }
            }
            _ => {}
        }
        Effect::None
    }

    /// The queues for an activation: every enabled queue, set up as the
    /// driver described it; `Err` names the first queue that is invalid
    /// (size, alignment). Ranges are checked against memory by the caller.
    pub fn build_queues(&self) -> Result<Vec<Queue>, String> {
        let event_idx = self.event_idx();
        self.queues
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut q = Queue::new(c.max_size.max(1)).map_err(|e| format!("queue {i}: {e}"))?;
                if c.enabled {
                    let bad = |e: virtio_queue::Error| format!("queue {i}: {e}");
                    q.try_set_size(c.size).map_err(bad)?;
                    q.try_set_desc_table_address(vm_memory::GuestAddress(c.desc))
                        .map_err(bad)?;
                    q.try_set_avail_ring_address(vm_memory::GuestAddress(c.driver))
                        .map_err(bad)?;
                    q.try_set_used_ring_address(vm_memory::GuestAddress(c.device))
                        .map_err(bad)?;
                    q.set_event_idx(event_idx);
                    q.set_ready(true);
                }
                Ok(q)
            })
            .collect()
    }

    /// Whether the driver speaks virtio 1.x (it accepted VERSION_1).
    pub fn modern(&self) -> bool {
        self.driver_features & F_VERSION_1 != 0
    }
}
