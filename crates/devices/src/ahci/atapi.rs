//! An ATAPI CD/DVD-ROM (MMC subset, as bhyve's pci_ahci plus GET
//! CONFIGURATION and media events): enough for El Torito boot in
//! firmware and for Linux's sr driver and isofs.
//!
//! Commands arrive in a PACKET command's ACMD area (16 bytes at 0x40 of
//! the command table); errors leave a sense key and additional sense
//! code for REQUEST SENSE, and the sense key in the error register.

use super::ata::{identify, IDENTIFY_PACKET, PACKET};
use super::port::{Ctx, Op, Port, ABORT, OK, S_ERR, S_READY};
use super::prdt::{CmdHeader, PrdtCursor};

pub const BLOCK: u64 = 2048;

const TEST_UNIT_READY: u8 = 0x00;
const REQUEST_SENSE: u8 = 0x03;
const INQUIRY: u8 = 0x12;
const START_STOP_UNIT: u8 = 0x1b;
const PREVENT_ALLOW: u8 = 0x1e;
const READ_CAPACITY: u8 = 0x25;
const READ_10: u8 = 0x28;
const READ_TOC: u8 = 0x43;
const GET_CONFIGURATION: u8 = 0x46;
const GET_EVENT_STATUS: u8 = 0x4a;
const MODE_SENSE_10: u8 = 0x5a;
const REPORT_LUNS: u8 = 0xa0;
const READ_12: u8 = 0xa8;

const SENSE_NOT_READY: u8 = 0x02;
const SENSE_MEDIUM_ERROR: u8 = 0x03;
const SENSE_ILLEGAL_REQUEST: u8 = 0x05;
/// Additional sense codes.
const ASC_INVALID_OPCODE: u8 = 0x20;
const ASC_LBA_OUT_OF_RANGE: u8 = 0x21;
const ASC_INVALID_FIELD: u8 = 0x24;
const ASC_SAVING_NOT_SUPPORTED: u8 = 0x39;
const ASC_MEDIUM_REMOVAL_PREVENTED: u8 = 0x53;
const ASC_UNRECOVERED_READ: u8 = 0x11;
const ASC_MEDIUM_NOT_PRESENT: u8 = 0x3a;

/// MMC profiles: what the medium is, by size.
const PROFILE_CDROM: u16 = 0x0008;
const PROFILE_DVDROM: u16 = 0x0010;
/// Largest CD (80 minutes of 2048-byte sectors); bigger is a DVD.
const CD_MAX_BYTES: u64 = 360_000 * BLOCK;

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A 2048-byte block address as minutes/seconds/frames (150 frames of
/// lead-in).
fn msf(lba: u64) -> [u8; 4] {
    let f = lba.saturating_add(150);
    [
        0,
        (f / 75 / 60).min(255) as u8,
        ((f / 75) % 60) as u8,
        (f % 75) as u8,
    ]
}

fn blocks(p: &Port) -> u64 {
    p.drive.as_ref().map_or(0, |d| d.info.size / BLOCK)
}

/// An image without a whole block is no medium: commands that need one
/// fail NOT READY, MEDIUM NOT PRESENT, as a drive with an empty tray.
const NO_MEDIUM: Option<(u8, u8)> = Some((SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT));

/// Ends a packet command: the interrupt reason (C/D, I/O) goes in the
/// sector count, a failed one sets the sense data.
fn done(p: &mut Port, ctx: &Ctx, slot: u8, cfis: &mut [u8], sense: Option<(u8, u8)>) {
    cfis[12] = (cfis[12] & !7) | 0x3;
    let tfd = match sense {
        None => OK,
        Some((key, asc)) => {
            p.sense_key = key;
            p.asc = asc;
            (u32::from(key) << 12) | S_READY | S_ERR
        }
    };
    p.d2h(ctx.mem, slot, cfis, tfd);
}

/// Answers with `data`, cut to the allocation length `alloc`.
fn reply(
    p: &mut Port,
    ctx: &Ctx,
    slot: u8,
    hdr: &CmdHeader,
    cfis: &mut [u8],
    data: &[u8],
    alloc: usize,
) {
    cfis[12] = (cfis[12] & !7) | 0x3;
    let n = data.len().min(alloc);
    p.reply(ctx, slot, hdr, cfis, &data[..n]);
}

pub(super) fn command(p: &mut Port, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &mut [u8]) {
    match cfis[2] {
        IDENTIFY_PACKET => {
            let Some(d) = p.drive.as_ref() else { return };
            if hdr.prdtl == 0 {
                return p.d2h(ctx.mem, slot, cfis, ABORT);
            }
            let id = identify(d, p.xfermode, 0);
            p.pio_setup(ctx.mem);
            p.reply(ctx, slot, hdr, cfis, &id);
        }
        PACKET => packet(p, ctx, slot, hdr, cfis),
        // Power management commands are harmless on a CD too.
        0xe5 => {
            cfis[12] = 0xff;
            p.d2h(ctx.mem, slot, cfis, OK);
        }
        0xe0..=0xe3 | 0xe6 => p.d2h(ctx.mem, slot, cfis, OK),
        // Everything else, IDENTIFY DEVICE included, aborts: the
        // signature already told the driver this is a packet device.
        _ => p.d2h(ctx.mem, slot, cfis, ABORT),
    }
}

fn packet(p: &mut Port, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &mut [u8]) {
    let mut acmd = [0u8; 16];
    acmd.copy_from_slice(&cfis[0x40..0x50]);
    let invalid = Some((SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD));
    match acmd[0] {
        TEST_UNIT_READY if blocks(p) == 0 => done(p, ctx, slot, cfis, NO_MEDIUM),
        TEST_UNIT_READY | PREVENT_ALLOW => done(p, ctx, slot, cfis, None),
        INQUIRY => {
            let alloc = be16(&acmd[3..5]);
            if acmd[1] & 1 != 0 {
                // Vital product data: only the list of pages.
                if acmd[2] != 0 {
                    return done(p, ctx, slot, cfis, invalid);
                }
                return reply(p, ctx, slot, hdr, cfis, &[0x05, 0, 0, 1, 0], alloc);
            }
            let mut b = [b' '; 36];
            b[..8].copy_from_slice(&[0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0]);
            b[8..13].copy_from_slice(b"BHYVE");
            b[16..29].copy_from_slice(b"BHYVE DVD-ROM");
            b[32..35].copy_from_slice(b"001");
            reply(p, ctx, slot, hdr, cfis, &b, alloc);
        }
        READ_CAPACITY if blocks(p) == 0 => done(p, ctx, slot, cfis, NO_MEDIUM),
        READ_CAPACITY => {
            let last = blocks(p).saturating_sub(1).min(u64::from(u32::MAX)) as u32;
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&last.to_be_bytes());
            b[4..].copy_from_slice(&(BLOCK as u32).to_be_bytes());
            reply(p, ctx, slot, hdr, cfis, &b, 8);
        }
        READ_10 | READ_12 => read(p, ctx, slot, hdr, cfis, &acmd),
        REQUEST_SENSE => {
            let mut b = [0u8; 18];
            b[0] = 0x70 | 0x80;
            b[2] = p.sense_key;
            b[7] = 10;
            b[12] = p.asc;
            p.sense_key = 0;
            p.asc = 0;
            reply(p, ctx, slot, hdr, cfis, &b, usize::from(acmd[4]));
        }
        START_STOP_UNIT => match acmd[4] & 3 {
            // Eject: the image stays.
            2 => done(
                p,
                ctx,
                slot,
                cfis,
                Some((SENSE_ILLEGAL_REQUEST, ASC_MEDIUM_REMOVAL_PREVENTED)),
            ),
            _ => done(p, ctx, slot, cfis, None),
        },
        READ_TOC => match toc(&acmd, blocks(p)) {
            Some(b) => reply(p, ctx, slot, hdr, cfis, &b, be16(&acmd[7..9])),
            None => done(p, ctx, slot, cfis, invalid),
        },
        GET_CONFIGURATION => {
            let size = p.drive.as_ref().map_or(0, |d| d.info.size);
            let b = configuration(size, acmd[1] & 3, be16(&acmd[2..4]) as u16);
            reply(p, ctx, slot, hdr, cfis, &b, be16(&acmd[7..9]));
        }
        MODE_SENSE_10 => {
            let (pc, code) = (acmd[2] >> 6, acmd[2] & 0x3f);
            let page = match (pc, code) {
                (3, _) => {
                    let s = Some((SENSE_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED));
                    return done(p, ctx, slot, cfis, s);
                }
                (0, 0x01) => mode_page(&[0x01, 6, 0, 5, 0, 0, 0, 0]),
                (0, 0x2a) => mode_page(&CD_CAPABILITIES),
                (0, 0x3f) => {
                    let mut v = vec![0x01, 6, 0, 5, 0, 0, 0, 0];
                    v.extend_from_slice(&CD_CAPABILITIES);
                    mode_page(&v)
                }
                _ => return done(p, ctx, slot, cfis, invalid),
            };
            reply(p, ctx, slot, hdr, cfis, &page, be16(&acmd[7..9]));
        }
        GET_EVENT_STATUS => {
            // Only polled operation.
            if acmd[1] & 1 == 0 {
                return done(p, ctx, slot, cfis, invalid);
            }
            let b = if acmd[4] & 0x10 != 0 {
                // Media class: a new medium once after reset, then none.
                let code = if std::mem::take(&mut p.media_event) {
                    2
                } else {
                    0
                };
                vec![0, 6, 0x04, 0x10, code, 0x02, 0, 0]
            } else {
                // No event of a requested class: NEA.
                vec![0, 2, 0x80, 0x10]
            };
            reply(p, ctx, slot, hdr, cfis, &b, be16(&acmd[7..9]));
        }
        REPORT_LUNS => {
            let mut b = [0u8; 16];
            b[3] = 8;
            reply(p, ctx, slot, hdr, cfis, &b, be32(&acmd[6..10]) as usize);
        }
        op => {
            log::debug!("ahci port {}: unsupported ATAPI command {op:#x}", p.num);
            done(
                p,
                ctx,
                slot,
                cfis,
                Some((SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE)),
            )
        }
    }
}

/// The CD capabilities page (2Ah) as bhyve reports it: reads CD-R/RW,
/// plays audio, locks and ejects a tray.
const CD_CAPABILITIES: [u8; 22] = [
    0x2a, 20, 0x08, 0, 0x71, 0, 0x29, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// MODE SENSE(10) data: an 8-byte header (medium type 70h, as bhyve)
/// then `pages`.
fn mode_page(pages: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    let len = (6 + pages.len()) as u16;
    v[..2].copy_from_slice(&len.to_be_bytes());
    v[2] = 0x70;
    v.extend_from_slice(pages);
    v
}

/// READ TOC/PMA/ATIP formats 0 (TOC), 1 (session info), 2 (full TOC),
/// for one data track, as bhyve builds them.
fn toc(acmd: &[u8], blocks: u64) -> Option<Vec<u8>> {
    let time = acmd[1] & 2 != 0;
    let addr = |v: &mut Vec<u8>, lba: u64| {
        if time {
            v.extend_from_slice(&msf(lba));
        } else {
            v.extend_from_slice(&(lba.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        }
    };
    // The format: bits 3:0 of byte 2, or the old place in byte 9.
    let format = match acmd[2] & 0xf {
        0 => acmd[9] >> 6,
        f => f,
    };
    let mut v = vec![0, 0, 1, 1];
    match format {
        0 => {
            let start = acmd[6];
            if start > 1 && start != 0xaa {
                return None;
            }
            if start <= 1 {
                v.extend_from_slice(&[0, 0x14, 1, 0]);
                addr(&mut v, 0);
            }
            v.extend_from_slice(&[0, 0x14, 0xaa, 0]);
            addr(&mut v, blocks);
        }
        1 => v.extend_from_slice(&[0, 0x14, 1, 0, 0, 0, 0, 0]),
        2 => {
            for (point, pmin) in [(0xa0u8, 1u8), (0xa1, 1)] {
                v.extend_from_slice(&[1, 0x14, 0, point, 0, 0, 0, 0, pmin, 0, 0]);
            }
            v.extend_from_slice(&[1, 0x14, 0, 0xa2, 0, 0, 0]);
            addr(&mut v, blocks);
            v.extend_from_slice(&[1, 0x14, 0, 1, 0, 0, 0]);
            addr(&mut v, 0);
        }
        _ => return None,
    }
    let len = (v.len() - 2) as u16;
    v[..2].copy_from_slice(&len.to_be_bytes());
    Some(v)
}

/// GET CONFIGURATION: the profile list, Core, Removable Medium and
/// Random Readable features; `rt` 0 all from `start`, 1 the current
/// ones from `start`, 2 only `start`.
fn configuration(size: u64, rt: u8, start: u16) -> Vec<u8> {
    let profile = if size > CD_MAX_BYTES {
        PROFILE_DVDROM
    } else {
        PROFILE_CDROM
    };
    let mut features: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut list = Vec::new();
    for pr in [PROFILE_DVDROM, PROFILE_CDROM] {
        list.extend_from_slice(&pr.to_be_bytes());
        list.extend_from_slice(&[u8::from(pr == profile), 0]);
    }
    features.push((0x0000, list));
    // Core: ATAPI interface, DBE.
    features.push((0x0001, vec![0, 0, 0, 2, 1, 0, 0, 0]));
    // Removable Medium: tray, eject, lock.
    features.push((0x0003, vec![0x29, 0, 0, 0]));
    // Random Readable: 2048-byte blocks, blocking 1.
    features.push((0x0010, vec![0, 0, 0x08, 0, 0, 1, 0, 0]));
    let mut v = vec![0u8; 8];
    v[6..8].copy_from_slice(&profile.to_be_bytes());
    for (code, body) in features {
        let keep = match rt {
            2 => code == start,
            _ => code >= start,
        };
        if !keep {
            continue;
        }
        v.extend_from_slice(&code.to_be_bytes());
        // Version (Core is version 2), persistent, current.
        let ver = if code == 1 { 0x08 } else { 0 };
        v.push(ver | 0x03);
        v.push(body.len() as u8);
        v.extend_from_slice(&body);
    }
    let len = (v.len() - 4) as u32;
    v[..4].copy_from_slice(&len.to_be_bytes());
    v
}

fn read(p: &mut Port, ctx: &Ctx, slot: u8, hdr: &CmdHeader, cfis: &mut [u8], acmd: &[u8]) {
    let lba = u64::from(be32(&acmd[2..6]));
    let n = if acmd[0] == READ_10 {
        be16(&acmd[7..9]) as u64
    } else {
        u64::from(be32(&acmd[6..10]))
    };
    let total = blocks(p);
    if total == 0 {
        return done(p, ctx, slot, cfis, NO_MEDIUM);
    }
    if lba > total || n > total - lba {
        let s = Some((SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE));
        return done(p, ctx, slot, cfis, s);
    }
    if n == 0 {
        return done(p, ctx, slot, cfis, None);
    }
    let (offset, left) = (lba * BLOCK, n * BLOCK);
    let mut cur = PrdtCursor::new(hdr);
    let r = match Port::chunk_request(ctx.mem, false, false, &mut cur, offset, left, BLOCK) {
        Ok(r) => r,
        Err(e) => {
            p.prdt_error(e, false);
            let s = Some((SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD));
            return done(p, ctx, slot, cfis, s);
        }
    };
    let op = Op::Rw {
        write: false,
        fua: false,
        ncq: false,
        atapi: true,
        cur,
        offset,
        left,
        done: 0,
        chunk: r.buffers.len(),
    };
    p.start(ctx, slot, cfis, op, vec![r]);
}

/// A READ(10/12) finished (all of it, or with an error).
pub(super) fn finish_read(p: &mut Port, ctx: &Ctx, slot: u8, cfis: &[u8; 20], ok: bool) {
    let mut c = [0u8; 20];
    c.copy_from_slice(cfis);
    let sense = (!ok).then_some((SENSE_MEDIUM_ERROR, ASC_UNRECOVERED_READ));
    done(p, ctx, slot, &mut c, sense);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_formats() {
        let mut a = [0u8; 16];
        a[0] = READ_TOC;
        // Format 0, LBA: track 1 at 0, lead-out at the end.
        let v = toc(&a, 1000).unwrap();
        assert_eq!(v.len(), 20);
        assert_eq!(&v[..4], &[0, 18, 1, 1]);
        assert_eq!(&v[12..20], &[0, 0x14, 0xaa, 0, 0, 0, 0x03, 0xe8]);
        // MSF: 1000 + 150 frames = 0:15:25.
        a[1] = 2;
        let v = toc(&a, 1000).unwrap();
        assert_eq!(&v[16..20], &[0, 0, 15, 25]);
        // Starting at the lead-out only; a bad track.
        a[6] = 0xaa;
        assert_eq!(toc(&a, 1000).unwrap().len(), 12);
        a[6] = 2;
        assert!(toc(&a, 1000).is_none());
        // Session info and full TOC, through the old format field.
        a[6] = 0;
        a[9] = 1 << 6;
        assert_eq!(
            toc(&a, 1000).unwrap(),
            vec![0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]
        );
        a[9] = 2 << 6;
        assert_eq!(toc(&a, 1000).unwrap().len(), 48);
        a[9] = 3 << 6;
        assert!(toc(&a, 1000).is_none());
    }

    #[test]
    fn configuration_profiles() {
        let v = configuration(1 << 20, 0, 0);
        assert_eq!(
            u32::from_be_bytes(v[..4].try_into().unwrap()) as usize,
            v.len() - 4
        );
        assert_eq!(&v[6..8], &PROFILE_CDROM.to_be_bytes());
        let v = configuration(8 << 30, 0, 0);
        assert_eq!(&v[6..8], &PROFILE_DVDROM.to_be_bytes());
        // Only the Core feature.
        let v = configuration(1 << 20, 2, 1);
        assert_eq!(v.len(), 8 + 12);
        assert_eq!(&v[8..10], &[0, 1]);
    }
}
