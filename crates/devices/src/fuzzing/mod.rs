//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly)
//! and for their deterministic replay in CI (`tests/fuzz_replay.rs`
//! runs every file of `fuzz/corpus/<target>/` through the same function).
//!
//! Each takes arbitrary bytes and must never panic, hang or touch memory
//! outside the guest RAM it was given: that is the property fuzzed.
//! Each also returns with no thread or file of its own left behind
//! (cargo-fuzz runs LeakSanitizer), so the next input starts afresh.

mod ahci;
mod blk;
mod console;
mod driver;
mod e1000;
mod net;
mod nvme;
mod p9;
mod scsi;

pub use ahci::ahci;
pub use blk::virtio_blk;
pub use console::virtio_console;
pub use e1000::e1000;
pub use net::virtio_net;
pub use nvme::nvme_controller;
pub use p9::virtio_p9;
pub use scsi::{scsi_cdb, virtio_scsi};

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::pci::{MsiMessage, PciDevice, PciInterrupts};
use crate::virtio::pci::{IrqMode, VirtioPci, LEGACY_BAR, MODERN_BAR};
use crate::virtio::{drain_queue, VirtioRnd};

/// Guest RAM of the fuzzed machine: small, so that random addresses
/// often land inside it.
const RAM: usize = 64 << 10;

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    fn rest(&self) -> &[u8] {
        self.0
    }

    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8()?;
        }
        Some(u64::from_le_bytes(b))
    }
}

fn ram(seed: &[u8]) -> GuestMemoryMmap {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM)])
        .expect("anonymous memory for the fuzzed guest");
    let n = seed.len().min(RAM);
    let _ = mem.write_slice(&seed[..n], GuestAddress(0));
    mem
}

/// A split virtqueue whose rings and descriptors are the input: the
/// first bytes choose the size and ring addresses, all of the input is
/// also guest RAM. Chains are walked in both directions and completed.
pub fn virtio_queue(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(size), Some(desc), Some(avail), Some(used), Some(flags)) =
        (c.u16(), c.u16(), c.u16(), c.u16(), c.u8())
    else {
        return;
    };
    let mem = ram(data);
    let Ok(mut q) = Queue::new(256) else { return };
    if q.try_set_size(size).is_err()
        || q.try_set_desc_table_address(GuestAddress(desc.into()))
            .is_err()
        || q.try_set_avail_ring_address(GuestAddress(avail.into()))
            .is_err()
        || q.try_set_used_ring_address(GuestAddress(used.into()))
            .is_err()
    {
        return;
    }
    q.set_event_idx(flags & 1 != 0);
    q.set_ready(true);
    if !q.is_valid(&mem) {
        return;
    }
    let mut buf = vec![0u8; 4096];
    let mut serve = |chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>| {
        let mut n = 0u32;
        for d in chain.clone().readable() {
            let len = (d.len() as usize).min(buf.len());
            let _ = mem.read_slice(&mut buf[..len], d.addr());
        }
        for d in chain.writable() {
            let len = (d.len() as usize).min(buf.len());
            if mem.write_slice(&buf[..len], d.addr()).is_ok() {
                n = n.saturating_add(len as u32);
            }
        }
        n
    };
    // Batch after batch, as a worker does; the ring is finite, so this
    // ends (add_used failing or the ring emptied).
    for _ in 0..usize::from(size.max(1)) * 4 {
        if !drain_queue(&mut q, &mem, &mut serve).more {
            break;
        }
    }
}

#[derive(Default)]
struct NoIrq;

impl PciInterrupts for NoIrq {
    fn set_intx(&self, _: bool) {}
    fn route_msi(&self, _: u16, _: Option<MsiMessage>) {}
    fn fire_msi(&self, _: u16) {}
}

/// The virtio-pci transport (with virtio-rnd behind it) driven by a
/// program the input encodes: register reads and writes in BAR 0, BAR 4
/// and configuration space (including DRIVER_OK with whatever rings the
/// input describes, and resets while the worker runs), and guest RAM
/// changes.
pub fn virtio_transport(data: &[u8]) {
    let mem = ram(data);
    let Ok(f) = VirtioPci::new_shared(Box::new(VirtioRnd::new()), mem.clone(), IrqMode::MsiX, None)
    else {
        return;
    };
    f.lock()
        .unwrap_or_else(|e| e.into_inner())
        .config_mut()
        .set_interrupts(Arc::new(NoIrq));
    let mut c = Cursor(data);
    let mut ops = 0;
    while let (Some(op), Some(off), Some(v)) = (c.u8(), c.u16(), c.u64()) {
        ops += 1;
        if ops > 4096 {
            break;
        }
        let len = [1usize, 2, 4, 8][usize::from(op >> 6)];
        let bytes = v.to_le_bytes();
        let mut out = [0u8; 8];
        let mut d = f.lock().unwrap_or_else(|e| e.into_inner());
        match op & 7 {
            0 => d.bar_write(LEGACY_BAR, u64::from(off % 64), &bytes[..len]),
            1 => d.bar_read(LEGACY_BAR, u64::from(off % 64), &mut out[..len]),
            2 => d.bar_write(MODERN_BAR, u64::from(off) % 0x4000, &bytes[..len]),
            3 => d.bar_read(MODERN_BAR, u64::from(off) % 0x4000, &mut out[..len]),
            4 => {
                if !d.cfg_write(off % 256, &bytes[..len]) {
                    d.config_mut().write(off % 256, &bytes[..len]);
                }
            }
            5 => {
                if !d.cfg_read(off % 256, &mut out[..len]) {
                    d.config().read(off % 256, &mut out[..len]);
                }
            }
            6 => {
                drop(d);
                let _ = mem.write_slice(&bytes[..len], GuestAddress(u64::from(off)));
            }
            _ => d.reset(),
        }
    }
    // Reset (stops the workers), then drop the function here, not in a
    // worker that briefly holds it to signal: the drop joins the
    // workers, so nothing outlives the input.
    f.lock().unwrap_or_else(|e| e.into_inner()).reset();
    drop_function(f);
}

/// Drops the last reference to a (reset) function on this thread,
/// waiting for workers that still hold one to let go.
fn drop_function(f: Arc<Mutex<VirtioPci>>) {
    for _ in 0..5000 {
        if Arc::strong_count(&f) == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    drop(f);
}

/// A temporary directory of this process, removed on drop.
struct TmpDir(std::path::PathBuf);

impl TmpDir {
    fn new(what: &str) -> Option<TmpDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bhyve-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).ok()?;
        Some(TmpDir(p))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_empty_inputs() {
        for n in 0..64 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            virtio_queue(&v);
            virtio_transport(&v);
            virtio_blk(&v);
            virtio_scsi(&v);
            scsi_cdb(&v);
            virtio_p9(&v);
            virtio_net(&v);
            virtio_console(&v);
            e1000(&v);
        }
    }
}
