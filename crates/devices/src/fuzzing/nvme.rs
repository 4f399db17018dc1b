//! The NVMe controller driven by a program the input encodes: register
//! and doorbell writes, guest RAM changes (commands, PRP lists, queue
//! entries all come from there), MSI-X enables and resets, against a
//! small RAM disk that checks what the controller asks of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::blk::checking_disk;
use super::{ram, Cursor, NoIrq, RAM};
use crate::nvme::{NvmeParams, NvmePci, REG_BAR};
use crate::pci::PciDevice;

/// Input: the disk's options byte (see [`super::blk::disk_info`]), a parameters
/// byte (maxq, qsz, ioslots), then operations of 7 bytes (op, a u16, a
/// u32). All of the input is also guest RAM.
pub fn nvme_controller(data: &[u8]) {
    let mut c = Cursor(data);
    let (Some(opts), Some(pb)) = (c.u8(), c.u8()) else {
        return;
    };
    let mem = ram(data);
    let Ok(disk) = checking_disk(opts) else {
        return;
    };
    let mut p = NvmeParams::bhyve_defaults(4, 0);
    p.max_queues = u16::from(pb & 3) + 1;
    p.queue_entries = [2, 4, 16, 2048][usize::from((pb >> 2) & 3)];
    p.ioslots = u32::from(pb >> 4) + 1;
    p.sector_size = if opts & 4 != 0 { 4096 } else { 512 };
    let Ok(f) = NvmePci::new_shared(p, disk.clone(), mem.clone()) else {
        return;
    };
    f.lock()
        .unwrap_or_else(|e| e.into_inner())
        .config_mut()
        .set_interrupts(Arc::new(NoIrq));
    let mut ops = 0;
    while let (Some(op), Some(a), Some(v)) = (c.u8(), c.u16(), c.u32()) {
        ops += 1;
        if ops > 2048 {
            break;
        }
        let mut d = f.lock().unwrap_or_else(|e| e.into_inner());
        match op % 8 {
            0 => d.bar_write(REG_BAR, u64::from(a % 0x40) & !3, &v.to_le_bytes()),
            1 => {
                let off = 0x1000 + u64::from(a % 40) * 4;
                d.bar_write(REG_BAR, off, &v.to_le_bytes());
            }
            2 => {
                drop(d);
                let at = u64::from(a) * 4 % RAM as u64;
                let _ = mem.write_obj(v, GuestAddress(at));
            }
            3 => {
                let mut out = [0u8; 8];
                let len = [1usize, 2, 4, 8][usize::from(a & 3)];
                d.bar_read(REG_BAR, u64::from(a) % 0x4000, &mut out[..len]);
            }
            // A driver's enable sequence, so that inputs reach commands:
            // admin queues of `a` entries at 0x1000 and 0x2000.
            4 => {
                let n = u32::from(a % 64) | (u32::from(a % 64) << 16);
                let w =
                    |d: &mut NvmePci, off: u64, x: u32| d.bar_write(REG_BAR, off, &x.to_le_bytes());
                w(&mut d, 0x24, n);
                w(&mut d, 0x28, 0x1000);
                w(&mut d, 0x2c, 0);
                w(&mut d, 0x30, 0x2000);
                w(&mut d, 0x34, 0);
                w(&mut d, 0x14, v | 1);
            }
            5 => {
                // Let the worker and completions run; with bit 15, hold
                // the disk's requests (bit 0) and finish some held ones,
                // so that resets, deletions and shutdowns meet commands
                // in flight.
                drop(d);
                if a & 0x8000 != 0 {
                    disk.hold(a & 1 != 0);
                    disk.release(usize::from((a >> 1) & 0xf));
                } else {
                    std::thread::sleep(Duration::from_micros(u64::from(a % 512)));
                }
            }
            6 => {
                let b = v.to_le_bytes();
                d.config_mut()
                    .write(a % 256, &b[..usize::from(a >> 14).max(1)]);
                d.config_mut()
                    .msix_write(crate::nvme::MSIX_BAR, u64::from(a % 64) * 4, &b);
            }
            _ => d.reset(),
        }
    }
    f.lock().unwrap_or_else(|e| e.into_inner()).reset();
    // Held requests own the controller's state: finish them all.
    disk.hold(false);
    disk.release(usize::MAX);
    drop_function(f);
    if let Some(v) = disk.take_violation() {
        panic!("nvme asked the backend for something it must not: {v}");
    }
}

/// Drops the last reference to a (reset) controller on this thread,
/// waiting for its worker or a completion that still holds one.
fn drop_function(f: Arc<Mutex<NvmePci>>) {
    for _ in 0..5000 {
        if Arc::strong_count(&f) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    drop(f);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inputs_and_a_driver_program() {
        for n in 0..64 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            nvme_controller(&v);
        }
        // Enable with 16-entry admin queues, put an Identify at 0x1000,
        // ring, wait: the answer lands at 0x3000 and the completion at
        // 0x2000.
        let mut prog = vec![2u8, 0x0c];
        let op = |p: &mut Vec<u8>, op: u8, a: u16, v: u32| {
            p.push(op);
            p.extend_from_slice(&a.to_le_bytes());
            p.extend_from_slice(&v.to_le_bytes());
        };
        op(&mut prog, 4, 15, (6 << 16) | (4 << 20));
        op(&mut prog, 2, 0x1000 / 4, 0x06);
        op(&mut prog, 2, (0x1000 + 24) / 4, 0x3000);
        op(&mut prog, 2, (0x1000 + 40) / 4, 1);
        op(&mut prog, 1, 0, 1);
        op(&mut prog, 5, 500, 0);
        nvme_controller(&prog);
        // A Format NVM held in the disk across a controller reset, then
        // let go.
        let mut prog = vec![2u8, 0x0c];
        op(&mut prog, 4, 15, (6 << 16) | (4 << 20));
        op(&mut prog, 2, 0x1000 / 4, 0x80);
        op(&mut prog, 2, (0x1000 + 4) / 4, 1);
        op(&mut prog, 5, 0x8001, 0);
        op(&mut prog, 1, 0, 1);
        op(&mut prog, 5, 500, 0);
        op(&mut prog, 0, 0x14, 0);
        op(&mut prog, 5, 0x8002, 0);
        nvme_controller(&prog);
        nvme_controller(&delete_busy_sq_program());
    }

    /// I/O pair 1, a read held in the disk, Delete I/O SQ 1, then the
    /// read let go (also `fuzz/corpus/nvme/seed-3`).
    fn delete_busy_sq_program() -> Vec<u8> {
        let mut p = vec![2u8, 0x0c];
        let mut op = |o: u8, a: u16, v: u32| {
            p.push(o);
            p.extend_from_slice(&a.to_le_bytes());
            p.extend_from_slice(&v.to_le_bytes());
        };
        let put = |op: &mut dyn FnMut(u8, u16, u32), at: u32, dws: &[(u32, u32)]| {
            for &(i, v) in dws {
                op(2, ((at + 4 * i) / 4) as u16, v);
            }
        };
        op(4, 15, (6 << 16) | (4 << 20));
        // Create I/O CQ 1 (16 entries at 0x4000), SQ 1 (at 0x5000).
        put(
            &mut op,
            0x1000,
            &[(0, 0x05), (6, 0x4000), (10, 1 | (15 << 16)), (11, 1)],
        );
        put(
            &mut op,
            0x1040,
            &[
                (0, 0x01),
                (6, 0x5000),
                (10, 1 | (15 << 16)),
                (11, 1 | (1 << 16)),
            ],
        );
        op(1, 0, 2);
        op(5, 500, 0);
        op(5, 0x8001, 0);
        // Read block 0 to 0x6000.
        put(&mut op, 0x5000, &[(0, 0x02), (1, 1), (6, 0x6000)]);
        op(1, 2, 1);
        op(5, 500, 0);
        // Delete I/O SQ 1, then finish the read.
        put(&mut op, 0x1080, &[(0, 0x00), (10, 1)]);
        op(1, 0, 3);
        op(5, 500, 0);
        op(5, 0x8002, 0);
        op(5, 500, 0);
        p
    }

    #[test]
    fn seed_3_is_the_delete_program() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/nvme/seed-3");
        assert_eq!(std::fs::read(path).unwrap(), delete_busy_sq_program());
    }
}
