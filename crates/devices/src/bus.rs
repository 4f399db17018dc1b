//! The port-I/O and MMIO buses: address ranges mapped to devices.
//!
//! Lock order: a dispatch looks the range up under the map's read lock
//! and releases it before locking the device, so a device may
//! (un)register ranges from inside its own `read`/`write` (the PCI root
//! moves BARs from a configuration write). The map lock is never held
//! while a device's mutex is taken.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device that owns one or more bus ranges.
pub trait BusDevice: Send {
    /// `base` is the start of the range that matched, `offset` the access's
    /// distance from it. `data.len()` is the access size (1, 2, 4 or 8).
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} overlaps an existing range")]
    Overlap { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} is empty or wraps")]
    BadRange { base: u64, len: u64 },
}

#[derive(Clone)]
struct Range {
    len: u64,
    dev: SharedDevice,
}

/// A set of non-overlapping ranges. Cheap to share: clone the `Arc`.
#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Range>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, base: u64, len: u64, dev: SharedDevice) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len - 1).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let mut map = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        let end = base + (len - 1);
        if let Some((b, r)) = map.range(..=end).next_back() {
            if b + (r.len - 1) >= base {
                return Err(BusError::Overlap { base, len });
            }
        }
        map.insert(base, Range { len, dev });
        Ok(())
    }

    /// Whether `base..base + len` is unclaimed (false for an empty or
    /// wrapping range).
    pub fn is_free(&self, base: u64, len: u64) -> bool {
        let Some(end) = len.checked_sub(1).and_then(|l| base.checked_add(l)) else {
            return false;
        };
        let map = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        map.range(..=end)
            .next_back()
            .is_none_or(|(b, r)| b + (r.len - 1) < base)
    }

    /// Removes the range starting at `base`; returns whether it existed.
    pub fn remove(&self, base: u64) -> bool {
        let mut map = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&base).is_some()
    }

    /// The device whose range holds all of `addr..addr + len`. An access
    /// that starts inside a range but runs past its end (a guest choosing
    /// the address and size) is unclaimed, so devices never see offsets
    /// beyond what they registered.
    fn lookup(&self, addr: u64, len: usize) -> Option<(u64, SharedDevice)> {
        let map = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (base, r) = map.range(..=addr).next_back()?;
        let off = addr - base;
        if off < r.len && (len as u64) <= r.len - off {
            Some((*base, r.dev.clone()))
        } else {
            None
        }
    }

    /// Dispatches a read; returns false when no device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.lookup(addr, data.len()) {
            Some((base, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .read(base, addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.lookup(addr, data.len()) {
            Some((base, dev)) => {
                dev.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .write(base, addr - base, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rec(Vec<(u64, u64, Vec<u8>)>);
    impl BusDevice for Rec {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.0.push((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn is_free_sees_claimed_ranges() {
        let bus = Bus::new();
        bus.insert(0x2000, 0x20, Arc::new(Mutex::new(Rec(Vec::new()))))
            .unwrap();
        assert!(!bus.is_free(0x2000, 0x20));
        assert!(!bus.is_free(0x1ff0, 0x11), "overlaps the first port");
        assert!(!bus.is_free(0x201f, 1), "overlaps the last port");
        assert!(bus.is_free(0x1fe0, 0x20));
        assert!(bus.is_free(0x2020, 0x20));
        assert!(!bus.is_free(0x10, 0), "empty");
        assert!(!bus.is_free(u64::MAX, 2), "wraps");
    }

    #[test]
    fn dispatch_and_overlap() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Rec(Vec::new())));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        assert_eq!(
            bus.insert(0x3fc, 8, dev.clone()),
            Err(BusError::Overlap {
                base: 0x3fc,
                len: 8
            })
        );
        assert_eq!(
            bus.insert(0x3f0, 9, dev.clone()),
            Err(BusError::Overlap {
                base: 0x3f0,
                len: 9
            })
        );
        bus.insert(0x3f0, 8, dev.clone()).unwrap();
        assert!(bus.insert(u64::MAX, 2, dev.clone()).is_err());
        assert!(bus.insert(0, 0, dev.clone()).is_err());
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(!bus.read(0x400, &mut b));
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(dev.lock().unwrap().0, vec![(0x3f8, 0, vec![0x41])]);
        // Accesses that run past the end of a range are not dispatched.
        let mut w = [0u8; 4];
        assert!(!bus.read(0x3fe, &mut w));
        assert!(!bus.write(0x3ff, &[1, 2]));
        assert!(bus.read(0x3fc, &mut w));
        assert!(bus.remove(0x3f8));
        assert!(!bus.write(0x3f8, &[0x41]));
    }
}
