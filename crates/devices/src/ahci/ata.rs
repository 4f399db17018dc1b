//! ATA commands of a SATA disk (ACS-3 subset, as bhyve's pci_ahci):
//! IDENTIFY DEVICE, READ/WRITE (PIO, multiple, DMA, EXT, FPDMA QUEUED),
//! FLUSH CACHE (EXT), DATA SET MANAGEMENT TRIM (also as SEND FPDMA
//! QUEUED), READ LOG (DMA) EXT, SET FEATURES, SET MULTIPLE, power
//! management commands.

use super::port::{Ctx, Op, Port, ABORT, E_ABORT, E_IDNF, OK, S_ERR, S_READY};
use super::prdt::{read_prdt, CmdHeader, PrdtCursor};
use super::Drive;
use crate::blockif::{BlockBuffers, BlockOp, BlockRequest};

pub const IDENTIFY: u8 = 0xec;
pub const IDENTIFY_PACKET: u8 = 0xa1;
const SET_FEATURES: u8 = 0xef;
const SET_MULTI: u8 = 0xc6;
pub const READ_DMA48: u8 = 0x25;
pub const WRITE_DMA48: u8 = 0x35;
pub const READ_FPDMA: u8 = 0x60;
pub const WRITE_FPDMA: u8 = 0x61;
pub const SEND_FPDMA: u8 = 0x64;
pub const FLUSH: u8 = 0xe7;
pub const FLUSH48: u8 = 0xea;
pub const DSM: u8 = 0x06;
pub const READ_LOG_EXT: u8 = 0x2f;
const READ_LOG_DMA_EXT: u8 = 0x47;
pub const CHECK_POWER_MODE: u8 = 0xe5;
pub const PACKET: u8 = 0xa0;

/// Reads and writes: (opcode, write, 48-bit, queued).
const RW: [(u8, bool, bool, bool); 14] = [
    (0x20, false, false, false), // READ SECTORS
    (0x30, true, false, false),  // WRITE SECTORS
    (0x24, false, true, false),  // READ SECTORS EXT
    (0x34, true, true, false),   // WRITE SECTORS EXT
    (0xc4, false, false, false), // READ MULTIPLE
    (0xc5, true, false, false),  // WRITE MULTIPLE
    (0x29, false, true, false),  // READ MULTIPLE EXT
    (0x39, true, true, false),   // WRITE MULTIPLE EXT
    (0xc8, false, false, false), // READ DMA
    (0xca, true, false, false),  // WRITE DMA
    (READ_DMA48, false, true, false),
    (WRITE_DMA48, true, true, false),
    (READ_FPDMA, false, true, true),
    (WRITE_FPDMA, true, true, true),
];

/// The NCQ commands (SATA 3.2 §13.6.3.2): READ/WRITE FPDMA QUEUED,
/// NCQ NON-DATA, SEND/RECEIVE FPDMA QUEUED.
fn is_queued(op: u8) -> bool {
    matches!(op, READ_FPDMA | WRITE_FPDMA | 0x63 | SEND_FPDMA | 0x65)
}

/// bhyve's IDENTIFY strings and `nmrr` of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub serial: String,
    pub model: String,
    pub revision: String,
    /// Nominal media rotation rate (1: non-rotating).
    pub nmrr: u16,
}

/// ATA string: space padded, bytes swapped in each word.
fn ata_string(words: &mut [u16], s: &str) {
    let b = s.as_bytes();
    for (i, w) in words.iter_mut().enumerate() {
        let c = |j: usize| u16::from(*b.get(j).unwrap_or(&b' '));
        *w = (c(2 * i) << 8) | c(2 * i + 1);
    }
}

/// bhyve's CHS geometry for a disk of `sectors` (blockif_chs, the VHD
/// algorithm).
pub fn chs(sectors: u64) -> (u16, u8, u8) {
    let sectors = sectors.min(65535 * 16 * 255);
    let (secpt, heads, hcyl);
    if sectors >= 65536 * 16 * 63 {
        secpt = 255;
        heads = 16;
        hcyl = sectors / secpt;
    } else {
        let mut s = 17;
        let mut hc = sectors / s;
        let mut h = hc.div_ceil(1024).max(4);
        if hc >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            hc = sectors / s;
        }
        if hc >= h * 1024 {
            s = 63;
            h = 16;
            hc = sectors / s;
        }
        secpt = s;
        heads = h;
        hcyl = hc;
    }
    ((hcyl / heads) as u16, heads as u8, secpt as u8)
}

/// The 512-byte IDENTIFY (PACKET) DEVICE data of `d`, for the port's
/// current transfer mode and multiple count.
pub fn identify(d: &Drive, xfermode: u8, mult: u8) -> [u8; 512] {
    let mut w = [0u16; 256];
    ata_string(&mut w[10..20], &d.ident.serial);
    ata_string(&mut w[23..27], &d.ident.revision);
    ata_string(&mut w[27..47], &d.ident.model);
    w[217] = d.ident.nmrr;
    let udma = |w: &mut [u16; 256]| {
        w[63] = 0x7;
        if xfermode & 0xf8 == 0x20 {
            w[63] |= 1 << ((xfermode & 7) + 8);
        }
        w[88] = 0x7f;
        if xfermode & 0xf8 == 0x40 {
            w[88] |= 1 << ((xfermode & 7) + 8);
        }
    };
    udma(&mut w);
    w[64] = 0x3;
    w[65..69].fill(0x78);
    w[222] = 0x1020;
    let gen = 0x2 | 0x4 | 0x8;
    if d.atapi {
        // ATAPI, CD-ROM, removable, 50 µs DRQ.
        w[0] = 0x8000 | 0x0500 | 0x0080 | 0x0040;
        w[49] = 0x200 | 0x100;
        w[50] = (1 << 14) | 1;
        w[53] = 0x2 | 0x4;
        w[62] = 0x3f;
        w[76] = gen;
        w[77] = 3 << 1;
        w[78] = 0x10;
        w[80] = 0x3f0;
        // Power management, PACKET, DEVICE RESET, NOP.
        w[82] = 0x8 | 0x10 | 0x200 | 0x4000;
        w[83] = 1 << 14;
        w[84] = 1 << 14;
        w[85] = w[82];
        w[87] = 1 << 14;
    } else {
        let i = &d.info;
        let ss = u64::from(i.sector_size.max(512));
        let sectors = i.size / ss;
        let (cyl, heads, secs) = chs(sectors);
        w[0] = 0x0040;
        w[1] = cyl;
        w[3] = heads.into();
        w[6] = secs.into();
        w[47] = 0x8000 | 128;
        // DMA, LBA, IORDY.
        w[49] = 0x100 | 0x200 | 0x800;
        w[50] = 1 << 14;
        w[53] = 0x2 | 0x4;
        if mult != 0 {
            w[59] = 0x100 | u16::from(mult);
        }
        let lba28 = sectors.min(0x0fff_ffff) as u32;
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        // NCQ depth 32.
        w[75] = 31;
        w[76] = gen | 0x100;
        // Receive/send FPDMA queued, current speed Gen3.
        w[77] = 0x40 | (3 << 1);
        w[80] = 0x3f0;
        w[81] = 0x28;
        // Power management, write cache, look-ahead, NOP.
        w[82] = 0x8 | 0x20 | 0x40 | 0x4000;
        // 48-bit, FLUSH CACHE (EXT).
        w[83] = 0x400 | 0x1000 | 0x2000 | (1 << 14);
        w[84] = 1 << 14;
        w[85] = w[82];
        w[86] = 0x400 | 0x1000 | 0x2000 | (1 << 15);
        w[87] = 1 << 14;
        for k in 0..4 {
            w[100 + k] = (sectors >> (16 * k)) as u16;
        }
        if i.can_delete && !i.read_only {
            // Deterministic read after TRIM, zeroes after TRIM.
            w[69] = (1 << 14) | (1 << 5);
            w[105] = 1;
            w[169] = 1;
        }
        w[106] = 0x4000;
        w[209] = 0x4000;
        let ps = u64::from(i.physical_sector_size);
        if ps > ss {
            w[106] |= 0x2000 | (ps / ss).trailing_zeros() as u16;
            w[209] |= (u64::from(i.physical_sector_offset) / ss) as u16;
        }
        if ss > 512 {
            w[106] |= 0x1000;
            let words = ss / 2;
            w[117] = words as u16;
            w[118] = (words >> 16) as u16;
        }
        // READ/WRITE LOG DMA EXT.
        w[119] = 0x8 | (1 << 14);
        w[120] = 0x8 | (1 << 14);
    }
    let mut b = [0u8; 512];
    for (i, v) in w.iter().enumerate() {
        b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
    b[510] = 0xa5;
    checksum(&mut b);
    b
}

/// Makes the bytes of `b` sum to zero (last byte).
fn checksum(b: &mut [u8]) {
    let n = b.len();
    let sum = b[..n - 1].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    b[n - 1] = 0u8.wrapping_sub(sum);
}

/// LBA and sector count of a read or write command.
fn lba_count(cfis: &[u8], lba48: bool, ncq: bool) -> (u64, u64) {
    let b = |i: usize| u64::from(cfis[i]);
    if lba48 {
        let lba = (b(10) << 40) | (b(9) << 32) | (b(8) << 24) | (b(6) << 16) | (b(5) << 8) | b(4);
        let n = if ncq {
            (b(11) << 8) | b(3)
        } else {
            (b(13) << 8) | b(12)
        };
        (lba, if n == 0 { 65536 } else { n })
    } else {
        let lba = ((b(7) & 0xf) << 24) | (b(6) << 16) | (b(5) << 8) | b(4);
        let n = b(12);
        (lba, if n == 0 { 256 } else { n })
    }
}

pub(super) fn command(p: &mut Port, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &mut [u8]) {
    let Some(d) = p.drive.as_ref() else { return };
    let info = d.info;
    let op = cfis[2];
    if !is_queued(op) && p.queued_outstanding() {
        // ATA8-ACS: aborted, with every queued command (d2h's error).
        // Drivers wait for the queue to empty first (Linux's
        // ata_std_qc_defer, FreeBSD's ahci_check_collision).
        log::debug!("ahci port {}: command {op:#x} among queued ones", p.num);
        return p.d2h(ctx.mem, slot, cfis, ABORT);
    }
    if let Some(&(_, write, lba48, ncq)) = RW.iter().find(|r| r.0 == op) {
        return rw(p, ctx, slot, hdr, cfis, write, lba48, ncq);
    }
    match op {
        IDENTIFY => {
            if hdr.prdtl == 0 {
                return p.d2h(ctx.mem, slot, cfis, ABORT);
            }
            let id = identify(d, p.xfermode, p.mult_sectors);
            p.pio_setup(ctx.mem);
            p.reply(ctx, slot, hdr, cfis, &id);
        }
        SET_FEATURES => {
            let tfd = match cfis[3] {
                // Enable SATA feature: only asynchronous notification.
                0x10 if cfis[12] == 0x05 => OK,
                // Write cache and read look-ahead on/off.
                0x02 | 0x82 | 0xaa | 0x55 => OK,
                // Transfer mode: remembered for IDENTIFY.
                0x03 => {
                    if matches!(cfis[12] & 0xf8, 0x20 | 0x40) {
                        p.xfermode = cfis[12];
                    }
                    OK
                }
                _ => ABORT,
            };
            p.d2h(ctx.mem, slot, cfis, tfd);
        }
        SET_MULTI => {
            let n = cfis[12];
            let tfd = if n != 0 && (n > 128 || !n.is_power_of_two()) {
                ABORT
            } else {
                p.mult_sectors = n;
                OK
            };
            p.d2h(ctx.mem, slot, cfis, tfd);
        }
        FLUSH | FLUSH48 => {
            let r = BlockRequest {
                op: BlockOp::Flush,
                offset: 0,
                len: 0,
                buffers: BlockBuffers::None,
                fua: false,
            };
            p.start(ctx, slot, cfis, Op::Flush, vec![r]);
        }
        DSM => {
            if cfis[3] == 1 && cfis[11] == 0 && cfis[12] == 1 && cfis[13] == 0 {
                return trim(p, ctx, slot, hdr, cfis, false);
            }
            p.d2h(ctx.mem, slot, cfis, ABORT);
        }
        SEND_FPDMA => {
            // Subcommand DATA SET MANAGEMENT, TRIM, one block of ranges.
            if cfis[13] & 0x1f == 0
                && cfis[16] == 1
                && cfis[17] == 0
                && cfis[3] == 1
                && cfis[11] == 0
            {
                return trim(p, ctx, slot, hdr, cfis, true);
            }
            p.d2h(ctx.mem, slot, cfis, ABORT);
        }
        READ_LOG_EXT | READ_LOG_DMA_EXT => read_log(p, ctx, slot, hdr, cfis, info),
        CHECK_POWER_MODE => {
            cfis[12] = 0xff; // active or idle
            p.d2h(ctx.mem, slot, cfis, OK);
        }
        // STANDBY (IMMEDIATE), IDLE (IMMEDIATE), SLEEP, READ VERIFY (EXT):
        // nothing to do on an image.
        0xe2 | 0xe0 | 0xe3 | 0xe1 | 0xe6 | 0x40 | 0x42 => p.d2h(ctx.mem, slot, cfis, OK),
        _ => {
            log::debug!("ahci port {}: unsupported ATA command {op:#x}", p.num);
            p.d2h(ctx.mem, slot, cfis, ABORT);
        }
    }
}

/// Fails a command before it reached the backend. A queued one is
/// accepted first and fails as an NCQ error, so that the log (page 10h)
/// names its tag.
fn fail(p: &mut Port, ctx: &Ctx, slot: u8, cfis: &[u8], ncq: bool, tfd: u32) {
    if ncq {
        p.d2h_ncq(ctx.mem, slot);
        p.sdb(ctx.mem, slot, cfis, tfd);
    } else {
        p.d2h(ctx.mem, slot, cfis, tfd);
    }
}

#[allow(clippy::too_many_arguments)]
fn rw(
    p: &mut Port,
    ctx: &Ctx,
    slot: u8,
    hdr: &CmdHeader,
    cfis: &[u8],
    write: bool,
    lba48: bool,
    ncq: bool,
) {
    let Some(d) = p.drive.as_ref() else { return };
    let info = d.info;
    let ss = u64::from(info.sector_size.max(512));
    let (lba, n) = lba_count(cfis, lba48, ncq);
    let sectors = info.size / ss;
    if lba > sectors || n > sectors - lba {
        return fail(p, ctx, slot, cfis, ncq, (E_IDNF << 8) | S_READY | S_ERR);
    }
    if write && info.read_only {
        return fail(p, ctx, slot, cfis, ncq, ABORT);
    }
    let (offset, left) = (lba * ss, n * ss);
    // FUA is bit 7 of the device register in FPDMA QUEUED commands (an
    // obsolete, often set bit in the others).
    let fua = write && ncq && cfis[7] & 0x80 != 0;
    let mut cur = PrdtCursor::new(hdr);
    let r = match Port::chunk_request(ctx.mem, write, fua, &mut cur, offset, left, ss) {
        Ok(r) => r,
        Err(e) => {
            p.prdt_error(e, write);
            return fail(p, ctx, slot, cfis, ncq, ABORT);
        }
    };
    if ncq {
        p.d2h_ncq(ctx.mem, slot);
    }
    let op = Op::Rw {
        write,
        fua,
        ncq,
        atapi: false,
        cur,
        offset,
        left,
        done: 0,
        chunk: r.buffers.len(),
    };
    p.start(ctx, slot, cfis, op, vec![r]);
}

/// DATA SET MANAGEMENT with TRIM: one 512-byte block of up to 64 ranges
/// (6-byte LBA, 2-byte count), each a discard; the command completes
/// when the last one did.
fn trim(p: &mut Port, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &[u8], ncq: bool) {
    let Some(d) = p.drive.as_ref() else { return };
    let info = d.info;
    if !info.can_delete || info.read_only {
        return fail(p, ctx, slot, cfis, ncq, ABORT);
    }
    let mut buf = [0u8; 512];
    if read_prdt(ctx.mem, hdr, &mut buf) < buf.len() {
        return fail(p, ctx, slot, cfis, ncq, ABORT);
    }
    let ss = u64::from(info.sector_size.max(512));
    let sectors = info.size / ss;
    let mut reqs = Vec::new();
    for e in buf.chunks_exact(8) {
        let mut l = [0u8; 8];
        l[..6].copy_from_slice(&e[..6]);
        let lba = u64::from_le_bytes(l);
        let n = u64::from(u16::from_le_bytes([e[6], e[7]]));
        if n == 0 {
            continue;
        }
        if lba > sectors || n > sectors - lba {
            return fail(p, ctx, slot, cfis, ncq, (E_IDNF << 8) | S_READY | S_ERR);
        }
        reqs.push(BlockRequest {
            op: BlockOp::Discard,
            offset: lba * ss,
            len: n * ss,
            buffers: BlockBuffers::None,
            fua: false,
        });
    }
    if ncq {
        p.d2h_ncq(ctx.mem, slot);
    }
    if reqs.is_empty() {
        if ncq {
            p.sdb(ctx.mem, slot, cfis, OK);
        } else {
            p.d2h(ctx.mem, slot, cfis, OK);
        }
        return;
    }
    let op = Op::Trim {
        outstanding: reqs.len() as u32,
        failed: false,
        ncq,
    };
    p.start(ctx, slot, cfis, op, reqs);
}

/// READ LOG (DMA) EXT: the log directory, the NCQ Command Error log
/// (10h) and the NCQ Send and Receive log (13h), one page each.
fn read_log(
    p: &mut Port,
    ctx: &Ctx,
    slot: u8,
    hdr: &CmdHeader,
    cfis: &[u8],
    info: crate::blockif::BlockInfo,
) {
    if hdr.prdtl == 0 || cfis[5] != 0 || cfis[9] != 0 || cfis[12] != 1 || cfis[13] != 0 {
        return p.d2h(ctx.mem, slot, cfis, ABORT);
    }
    let mut buf = [0u8; 512];
    match cfis[4] {
        0x00 => {
            buf[0] = 1; // version
            buf[0x10 * 2] = 1;
            buf[0x13 * 2] = 1;
        }
        0x10 => {
            buf[..20].copy_from_slice(&p.err_cfis);
            checksum(&mut buf);
        }
        0x13 => {
            if info.can_delete && !info.read_only {
                buf[0] = 1; // DSM through SEND FPDMA QUEUED
                buf[4] = 1; // with TRIM
            }
        }
        _ => return p.d2h(ctx.mem, slot, cfis, (E_ABORT << 8) | S_READY | S_ERR),
    }
    if cfis[2] == READ_LOG_EXT {
        p.pio_setup(ctx.mem);
    }
    p.reply(ctx, slot, hdr, cfis, &buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_as_bhyve() {
        // 1 GiB: 2097152 sectors.
        assert_eq!(chs(2_097_152), (2080, 16, 63));
        assert_eq!(chs(0), (0, 4, 17));
        // Huge disks are clamped.
        assert_eq!(chs(u64::MAX), (65535, 16, 255));
    }

    #[test]
    fn ata_strings_swap_bytes() {
        let mut w = [0u16; 3];
        ata_string(&mut w, "ABC");
        assert_eq!(w, [0x4142, 0x4320, 0x2020]);
    }

    #[test]
    fn lba_decoding() {
        let mut c = [0u8; 20];
        c[4..7].copy_from_slice(&[1, 2, 3]);
        c[7] = 0xe4;
        c[8..11].copy_from_slice(&[4, 5, 6]);
        c[12] = 0;
        assert_eq!(lba_count(&c, false, false), (0x0403_0201, 256));
        assert_eq!(lba_count(&c, true, false), (0x0605_0403_0201, 65536));
        c[3] = 8;
        assert_eq!(lba_count(&c, true, true), (0x0605_0403_0201, 8));
    }
}
