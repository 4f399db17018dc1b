//! AHCI: an HBA with a disk (port 0) and a CD-ROM (port 1) driven by a
//! register program whose command lists, command tables, FISes, ATAPI
//! packets and PRDTs are whatever the input put in guest RAM. Checked:
//! no panic or hang, and the backends are never asked for anything
//! outside the disks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ram, Cursor, NoIrq};
use crate::ahci::{Ahci, Drive, Ident, ABAR};
use crate::blockif::BlockOp;
use crate::pci::PciDevice;
use crate::ramdisk::{Completion, Options, RamDisk};

const DISK: usize = 256 << 10;
const CD: usize = 64 << 10;

/// Registers worth hitting, so that random programs reach commands:
/// GHC, IS, then port 0 and port 1's CLB, FB, IS, IE, CMD, SCTL, SERR,
/// SACT, CI.
const REGS: [u64; 20] = [
    0x04, 0x08, 0x100, 0x108, 0x110, 0x114, 0x118, 0x12c, 0x134, 0x138, 0x180, 0x188, 0x190, 0x194,
    0x198, 0x1ac, 0x1b4, 0x1b8, 0x130, 0x1b0,
];

/// Input: a program of 7-byte operations (op, selector u16, value u32)
/// until op 0xff or the end; all of the input is also guest RAM (64 KiB).
/// op & 7: 0 write a chosen register, 1 write any ABAR dword, 2 read,
/// 3 write guest RAM, 4 configuration write, 5 hold/release the disks,
/// 6 function reset, 7 release the disks and wait for them to drain.
pub fn ahci(data: &[u8]) {
    exercise(data);
}

/// [`ahci`], returning what the disk (port 0) was asked to do.
fn exercise(data: &[u8]) -> Vec<(BlockOp, u64, u64)> {
    let mem = ram(data);
    let ident = |m: &str| Ident {
        serial: "FUZZ".into(),
        model: m.into(),
        revision: "1".into(),
        nmrr: 1,
    };
    let worker = Options {
        completion: Completion::Worker,
        strict: false,
    };
    let (Ok(disk), Ok(cd)) = (
        RamDisk::new(vec![0; DISK], RamDisk::info_rw(), worker),
        RamDisk::new(vec![0; CD], RamDisk::info_rw(), worker),
    ) else {
        return Vec::new();
    };
    let drives = vec![
        (0, Drive::new(disk.clone(), false, ident("D"))),
        (1, Drive::new(cd.clone(), true, ident("C"))),
    ];
    let Ok(f) = Ahci::new_shared(drives, mem.clone()) else {
        return Vec::new();
    };
    f.lock()
        .unwrap_or_else(|e| e.into_inner())
        .config_mut()
        .set_interrupts(Arc::new(NoIrq));
    let mut c = Cursor(data);
    for _ in 0..4096 {
        let (Some(op), Some(sel), Some(v)) = (c.u8(), c.u16(), c.u32()) else {
            break;
        };
        if op == 0xff {
            break;
        }
        let mut d = f.lock().unwrap_or_else(|e| e.into_inner());
        match op & 7 {
            0 => {
                let r = REGS[usize::from(sel) % REGS.len()];
                d.bar_write(ABAR, r, &v.to_le_bytes());
            }
            1 => d.bar_write(ABAR, u64::from(sel & 0x3fc), &v.to_le_bytes()),
            2 => {
                let mut b = [0u8; 4];
                d.bar_read(
                    ABAR,
                    u64::from(sel & 0x3ff),
                    &mut b[..1 + (op >> 6) as usize % 4],
                );
            }
            3 => {
                drop(d);
                let _ = vm_memory::Bytes::write_obj(&mem, v, vm_memory::GuestAddress(sel.into()));
            }
            4 => {
                d.config_mut().write(sel % 256, &v.to_le_bytes()[..2]);
            }
            5 => {
                drop(d);
                disk.hold(v & 1 != 0);
                cd.hold(v & 2 != 0);
            }
            6 => d.reset(),
            _ => {
                drop(d);
                disk.hold(false);
                cd.hold(false);
                drain(&[&disk, &cd]);
            }
        }
    }
    disk.hold(false);
    cd.hold(false);
    f.lock().unwrap_or_else(|e| e.into_inner()).reset();
    drain(&[&disk, &cd]);
    for (d, size) in [(&disk, DISK), (&cd, CD)] {
        for (op, off, len) in d.executed() {
            assert!(
                off.checked_add(len).is_some_and(|e| e <= size as u64),
                "{op:?} at {off:#x}+{len:#x} outside a {size:#x}-byte disk"
            );
        }
    }
    drop_hba(f);
    disk.executed()
}

/// Waits (boundedly) until the disks' queues are empty; they are not
/// held, so this is quick.
fn drain(disks: &[&Arc<RamDisk>]) {
    let t = Instant::now();
    while disks.iter().any(|d| d.queued() > 0) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Drops the HBA on this thread once no completion holds it.
fn drop_hba(f: Arc<Mutex<Ahci>>) {
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

    /// A hand-made program: start port 0, READ DMA EXT of 2 sectors,
    /// then an NCQ read with a PRDT outside RAM.
    #[test]
    fn seed_program_runs() {
        let mut p: Vec<u8> = Vec::new();
        let mut op = |o: u8, s: u16, v: u32| {
            p.push(o);
            p.extend_from_slice(&s.to_le_bytes());
            p.extend_from_slice(&v.to_le_bytes());
        };
        op(0, 2, 0x1000); // P0CLB
        op(0, 3, 0x1400); // P0FB
        op(0, 6, 0x11); // P0CMD FRE|ST
        op(0, 9, 1); // P0CI
        op(7, 0, 0);
        op(0xff, 0, 0);
        let mut data = vec![0u8; 0x3000];
        data[..p.len()].copy_from_slice(&p);
        // Header of slot 0: CFL 5, one PRDT entry, table at 0x2000.
        data[0x1000] = 5;
        data[0x1002] = 1;
        data[0x1008..0x100c].copy_from_slice(&0x2000u32.to_le_bytes());
        data[0x2000..0x2004].copy_from_slice(&[0x27, 0x80, 0x25, 0]);
        data[0x2004] = 8; // LBA 8
        data[0x200c] = 2; // 2 sectors
        data[0x2080..0x2084].copy_from_slice(&0x2800u32.to_le_bytes());
        data[0x208c..0x2090].copy_from_slice(&1023u32.to_le_bytes());
        assert_eq!(exercise(&data), vec![(BlockOp::Read, 8 * 512, 1024)]);
    }
}
