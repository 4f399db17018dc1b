//! Port-I/O and MMIO exits dispatched to the buses.
//!
//! An access nobody claims reads as all ones and drops writes, as on a PC
//! bus, unless `x86.strictio` (`-e`) asks bhyve to stop on unemulated
//! ports. Sizes and counts come from KVM but are checked anyway: a string
//! I/O exit is split into `count` accesses of `size` bytes.

use bhyve_devices::Bus;

/// Direction of a port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDir {
    In,
    Out,
}

/// An access nobody claimed, when `-e` makes that fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhandled {
    pub dir: IoDir,
    pub port: u16,
    pub size: usize,
}

impl Unhandled {
    /// bhyve's wording: "Unhandled outb 0x0080 at 0x…".
    pub fn message(&self, rip: u64) -> String {
        let op = if self.dir == IoDir::In { "in" } else { "out" };
        let sz = match self.size {
            1 => 'b',
            2 => 'w',
            _ => 'l',
        };
        format!("Unhandled {op}{sz} {:#06x} at {rip:#x}", self.port)
    }
}

/// Handles one PIO exit of `data.len() / size` accesses to `port`.
pub fn pio(
    bus: &Bus,
    dir: IoDir,
    port: u16,
    size: usize,
    data: &mut [u8],
    strict: bool,
) -> Result<(), Unhandled> {
    if !matches!(size, 1 | 2 | 4) || !data.len().is_multiple_of(size) {
        log::warn!(
            "malformed port access: port {port:#x} size {size} len {}",
            data.len()
        );
        return Ok(());
    }
    for chunk in data.chunks_exact_mut(size) {
        let claimed = match dir {
            IoDir::In => bus.read(port.into(), chunk),
            IoDir::Out => bus.write(port.into(), chunk),
        };
        if !claimed {
            if strict {
                return Err(Unhandled { dir, port, size });
            }
            if dir == IoDir::In {
                chunk.fill(0xff);
            }
        }
    }
    Ok(())
}

/// Handles an MMIO read: unclaimed addresses read as all ones.
pub fn mmio_read(bus: &Bus, addr: u64, data: &mut [u8]) {
    if !bus.read(addr, data) {
        log::debug!("unclaimed mmio read {addr:#x}/{}", data.len());
        data.fill(0xff);
    }
}

/// Handles an MMIO write: unclaimed writes are dropped.
pub fn mmio_write(bus: &Bus, addr: u64, data: &[u8]) {
    if !bus.write(addr, data) {
        log::debug!("unclaimed mmio write {addr:#x}/{}", data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bhyve_devices::BusDevice;
    use std::sync::{Arc, Mutex};

    struct Echo(Vec<u8>);
    impl BusDevice for Echo {
        fn read(&mut self, _b: u64, off: u64, data: &mut [u8]) {
            data.fill(0x40 + off as u8);
        }
        fn write(&mut self, _b: u64, _off: u64, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    #[test]
    fn string_io_and_unclaimed() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo(Vec::new())));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut out = *b"abcd";
        pio(&bus, IoDir::Out, 0x3f8, 1, &mut out, true).unwrap();
        assert_eq!(dev.lock().unwrap().0, b"abcd");
        let mut inp = [0u8; 4];
        pio(&bus, IoDir::In, 0x3f9, 2, &mut inp, false).unwrap();
        assert_eq!(inp, [0x41; 4]);
        let mut un = [0u8; 2];
        pio(&bus, IoDir::In, 0x80, 2, &mut un, false).unwrap();
        assert_eq!(un, [0xff; 2]);
        let e = pio(&bus, IoDir::Out, 0x80, 1, &mut [0], true).unwrap_err();
        assert_eq!(e.message(0x1234), "Unhandled outb 0x0080 at 0x1234");
        // Malformed sizes are ignored, never indexed out of bounds.
        pio(&bus, IoDir::In, 0x3f8, 3, &mut [0; 4], true).unwrap();
        let mut m = [0u8; 4];
        mmio_read(&bus, 0xfee0_0000, &mut m);
        assert_eq!(m, [0xff; 4]);
    }
}
