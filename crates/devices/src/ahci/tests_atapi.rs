//! The ATAPI CD-ROM through PACKET commands.

use super::ata;
use super::port::*;
use super::tests::{fis, Hba, DATA};
use crate::ramdisk::RamDisk;

/// A CD of `blocks` 2048-byte blocks on port 1.
fn cd(blocks: usize) -> Hba {
    let h = Hba::new(&[(1, true, blocks * 2048, RamDisk::info_rw())]);
    h.start(1);
    h
}

fn packet(h: &Hba, slot: u8, acmd: &[u8], len: u32) -> u32 {
    let mut f = fis(ata::PACKET, 0, 0);
    f[3] = 1; // DMA
    let mut a = [0u8; 16];
    a[..acmd.len()].copy_from_slice(acmd);
    h.run(1, slot, &f, &a, &[(DATA, len)])
}

fn sense(h: &Hba) -> (u8, u8) {
    h.recover(1);
    assert_eq!(packet(h, 0, &[0x03, 0, 0, 0, 18], 64) & 0xff, 0x50);
    let s = h.read_mem(DATA, 18);
    (s[2], s[12])
}

#[test]
fn identify_packet_device_and_inquiry() {
    let h = cd(100);
    // IDENTIFY DEVICE aborts on a packet device; IDENTIFY PACKET works.
    assert_eq!(
        h.run(1, 0, &fis(ata::IDENTIFY, 0, 0), &[], &[(DATA, 512)]),
        ABORT
    );
    h.recover(1);
    let tfd = h.run(1, 0, &fis(ata::IDENTIFY_PACKET, 0, 0), &[], &[(DATA, 512)]);
    assert_eq!(tfd & 0xff, 0x50);
    let id = h.read_mem(DATA, 512);
    assert_eq!(u16::from_le_bytes([id[0], id[1]]), 0x85c0);
    assert_eq!(&id[54..58], b"ETTS", "model, byte-swapped");
    // INQUIRY: CD/DVD device, removable, vendor and product.
    assert_eq!(packet(&h, 1, &[0x12, 0, 0, 0, 36], 512) & 0xff, 0x50);
    let q = h.read_mem(DATA, 36);
    assert_eq!(&q[..2], &[0x05, 0x80]);
    assert_eq!(&q[8..13], b"BHYVE");
    assert_eq!(h.prdbc(1, 1), 36);
    // Allocation length cuts the answer.
    packet(&h, 1, &[0x12, 0, 0, 0, 5], 512);
    assert_eq!(h.prdbc(1, 1), 5);
    // Unknown VPD page.
    assert_eq!(packet(&h, 2, &[0x12, 1, 0x83, 0, 64], 512) & 0x01, 1);
    assert_eq!(sense(&h), (5, 0x24));
}

#[test]
fn capacity_and_reads() {
    let h = cd(100);
    assert_eq!(packet(&h, 0, &[0x00], 0x10) & 0xff, 0x50);
    packet(&h, 0, &[0x25], 8);
    assert_eq!(h.read_mem(DATA, 8), vec![0, 0, 0, 99, 0, 0, 8, 0]);
    // READ(10) of blocks 10..12.
    let tfd = packet(&h, 1, &[0x28, 0, 0, 0, 0, 10, 0, 0, 2], 4096);
    assert_eq!(tfd & 0xff, 0x50);
    let want = h.disks[0].with_data(|v| v[10 * 2048..12 * 2048].to_vec());
    assert_eq!(h.read_mem(DATA, 4096), want);
    assert_eq!(h.prdbc(1, 1), 4096);
    // READ(12) of the last block; one past the end fails.
    let tfd = packet(&h, 2, &[0xa8, 0, 0, 0, 0, 99, 0, 0, 0, 1], 2048);
    assert_eq!(tfd & 0xff, 0x50);
    let tfd = packet(&h, 3, &[0xa8, 0, 0, 0, 0, 99, 0, 0, 0, 2], 4096);
    assert_eq!(tfd & 0xff, 0x41);
    assert_eq!(tfd >> 12, 5, "sense key in the error register");
    assert_eq!(sense(&h), (5, 0x21));
    // After REQUEST SENSE the sense is gone.
    assert_eq!(sense(&h), (0, 0));
    // A zero-length read succeeds without I/O.
    let n = h.disks[0].executed().len();
    assert_eq!(packet(&h, 4, &[0x28], 2048) & 0xff, 0x50);
    assert_eq!(h.disks[0].executed().len(), n);
}

#[test]
fn toc_mode_sense_configuration_events() {
    let h = cd(1000);
    packet(&h, 0, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100], 512);
    assert_eq!(h.prdbc(1, 0), 20);
    assert_eq!(&h.read_mem(DATA, 4), &[0, 18, 1, 1]);
    // MODE SENSE(10): capabilities page, then an unsupported page.
    packet(&h, 1, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 64], 512);
    let m = h.read_mem(DATA, 30);
    assert_eq!(&m[..3], &[0, 28, 0x70]);
    assert_eq!(m[8], 0x2a);
    assert_eq!(
        packet(&h, 2, &[0x5a, 0, 0x05, 0, 0, 0, 0, 0, 64], 512) & 1,
        1
    );
    assert_eq!(sense(&h), (5, 0x24));
    // Saved values are not supported.
    assert_eq!(
        packet(&h, 2, &[0x5a, 0, 0xea, 0, 0, 0, 0, 0, 64], 512) & 1,
        1
    );
    assert_eq!(sense(&h), (5, 0x39));
    // GET CONFIGURATION: current profile CD-ROM.
    assert_eq!(
        packet(&h, 3, &[0x46, 0, 0, 0, 0, 0, 0, 1, 0], 512) & 0xff,
        0x50
    );
    let c = h.read_mem(DATA, 8);
    assert_eq!(&c[6..8], &[0, 0x08]);
    // GET EVENT STATUS NOTIFICATION: new media once, then nothing.
    let ev = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8];
    packet(&h, 4, &ev, 512);
    assert_eq!(h.read_mem(DATA, 8), vec![0, 6, 4, 0x10, 2, 2, 0, 0]);
    packet(&h, 4, &ev, 512);
    assert_eq!(h.read_mem(DATA, 8), vec![0, 6, 4, 0x10, 0, 2, 0, 0]);
    // Asynchronous mode is refused.
    assert_eq!(
        packet(&h, 5, &[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8], 512) & 1,
        1
    );
    assert_eq!(sense(&h), (5, 0x24));
    // Eject is refused, load and lock are fine; unknown opcodes fail.
    assert_eq!(packet(&h, 6, &[0x1b, 0, 0, 0, 2], 0x10) & 1, 1);
    assert_eq!(sense(&h), (5, 0x53));
    assert_eq!(packet(&h, 6, &[0x1b, 0, 0, 0, 1], 0x10) & 0xff, 0x50);
    assert_eq!(packet(&h, 7, &[0x1e, 0, 0, 0, 1], 0x10) & 0xff, 0x50);
    assert_eq!(packet(&h, 8, &[0xff], 0x10) & 1, 1);
    assert_eq!(sense(&h), (5, 0x20));
}

#[test]
fn no_medium_is_not_ready() {
    // A zero-size image (no medium): READ CAPACITY and TEST UNIT READY
    // fail as READ does, NOT READY / MEDIUM NOT PRESENT.
    let h = cd(0);
    assert_eq!(h.disks[0].with_data(|v| v.len()), 0);
    let tfd = packet(&h, 0, &[0x25], 8);
    assert_eq!(tfd & 0xff, 0x41, "READ CAPACITY on no medium");
    assert_eq!(tfd >> 12, 2, "sense key NOT READY");
    assert_eq!(sense(&h), (2, 0x3a));
    assert_eq!(packet(&h, 1, &[0x00], 0x10) & 0xff, 0x41);
    assert_eq!(sense(&h), (2, 0x3a));
    assert_eq!(
        packet(&h, 2, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1], 2048) & 0xff,
        0x41
    );
    assert_eq!(sense(&h), (2, 0x3a));
}
