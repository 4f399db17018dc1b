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
                // Let the worker and completions run.
                drop(d);
                std::thread::sleep(Duration::from_micros(u64::from(a % 512)));
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
    }
}
