//! The data our SCSI target returns: standard INQUIRY, the VPD pages,
//! REPORT LUNS, READ CAPACITY and the mode pages (SPC-4, SBC-3).

use super::target::{LunInfo, MAX_TRANSFER_BYTES, MAX_UNMAP_BYTES, MAX_UNMAP_DESCRIPTORS};

/// T10 vendor identification, product identification and revision
/// (space padded, as INQUIRY wants them).
pub const VENDOR: &[u8; 8] = b"BHYVE   ";
pub const PRODUCT: &[u8; 16] = b"VIRTUAL DISK    ";
pub const REVISION: &[u8; 4] = b"0001";

/// Peripheral device type: direct-access block device.
const PDT_DISK: u8 = 0x00;
/// Peripheral qualifier 3, type 0x1f: no unit at this LUN.
const PDT_NONE: u8 = 0x7f;

/// VPD pages we offer, in ascending order.
const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

/// Standard INQUIRY data (36 bytes); `None` for a LUN with no unit.
pub fn standard_inquiry(lun: Option<&LunInfo>) -> Vec<u8> {
    let mut d = vec![0u8; 36];
    d[0] = if lun.is_some() { PDT_DISK } else { PDT_NONE };
    d[2] = 0x06; // SPC-4
    d[3] = 0x12; // HISUP, response data format 2
    d[4] = (d.len() - 5) as u8;
    d[7] = 0x02; // CMDQUE: tagged queueing
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    d
}

fn vpd_page(page: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![PDT_DISK, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(body);
    d
}

/// The serial as VPD pages carry it: printable ASCII, at most 240 bytes.
fn serial_bytes(lun: &LunInfo) -> Vec<u8> {
    lun.serial
        .bytes()
        .filter(|b| (0x20..0x7f).contains(b))
        .take(240)
        .collect()
}

/// VPD page `page`, or None for one we do not have.
pub fn vpd(lun: &LunInfo, page: u8) -> Option<Vec<u8>> {
    let bs = lun.block_size();
    let info = &lun.info;
    Some(match page {
        0x00 => vpd_page(0x00, &VPD_PAGES),
        0x80 => vpd_page(0x80, &serial_bytes(lun)),
        0x83 => {
            // One designator: T10 vendor ID based (type 1, ASCII,
            // associated with the logical unit): vendor then serial.
            let mut id = VENDOR.to_vec();
            id.extend_from_slice(&serial_bytes(lun));
            let mut body = vec![0x02, 0x01, 0x00, id.len() as u8];
            body.extend_from_slice(&id);
            vpd_page(0x83, &body)
        }
        0xb0 => {
            let mut b = [0u8; 0x3c];
            b[0] = 0x01; // WSNZ: WRITE SAME of 0 blocks is refused
            let ratio = u64::from(info.physical_sector_size).max(bs) / bs;
            b[2..4].copy_from_slice(&(ratio.min(0xffff) as u16).to_be_bytes());
            b[4..8].copy_from_slice(&((MAX_TRANSFER_BYTES / bs) as u32).to_be_bytes());
            if lun.can_unmap() {
                b[16..20].copy_from_slice(&((MAX_UNMAP_BYTES / bs) as u32).to_be_bytes());
                b[20..24].copy_from_slice(&(MAX_UNMAP_DESCRIPTORS as u32).to_be_bytes());
                b[24..28].copy_from_slice(&(ratio as u32).to_be_bytes());
            }
            if !info.read_only {
                b[32..40].copy_from_slice(&(MAX_UNMAP_BYTES / bs).to_be_bytes());
            }
            vpd_page(0xb0, &b)
        }
        0xb1 => {
            let mut b = [0u8; 0x3c];
            b[1] = 0x01; // medium rotation rate 1: non-rotating
            vpd_page(0xb1, &b)
        }
        0xb2 => {
            let mut b = [0u8; 4];
            if lun.can_unmap() {
                // LBPU, LBPWS, LBPWS10, and LBPRZ: unmapped blocks read
                // as zeroes on our backends.
                b[1] = 0x80 | 0x40 | 0x20 | 0x04;
                b[2] = 0x02; // thin provisioned
            }
            vpd_page(0xb2, &b)
        }
        _ => return None,
    })
}

/// A LUN as SAM-5 encodes it: peripheral addressing below 256, flat
/// space addressing above.
fn encode_lun(lun: u16) -> [u8; 8] {
    let mut l = [0u8; 8];
    if lun < 256 {
        l[1] = lun as u8;
    } else {
        l[0] = 0x40 | ((lun >> 8) as u8 & 0x3f);
        l[1] = lun as u8;
    }
    l
}

pub fn report_luns(luns: &[u16]) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    d[0..4].copy_from_slice(&((luns.len() * 8) as u32).to_be_bytes());
    for &l in luns {
        d.extend_from_slice(&encode_lun(l));
    }
    d
}

pub fn read_capacity_10(lun: &LunInfo) -> Vec<u8> {
    let last = lun.blocks().saturating_sub(1);
    // 0xffffffff tells the initiator to use READ CAPACITY(16).
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    let mut d = last.to_be_bytes().to_vec();
    d.extend_from_slice(&(lun.block_size() as u32).to_be_bytes());
    d
}

pub fn read_capacity_16(lun: &LunInfo) -> Vec<u8> {
    let bs = lun.block_size();
    let info = &lun.info;
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&lun.blocks().saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&(bs as u32).to_be_bytes());
    let ps = u64::from(info.physical_sector_size).max(bs);
    d[13] = ((ps / bs).trailing_zeros() as u8) & 0x0f;
    // Lowest aligned LBA: the first logical block starting a physical one.
    let off = u64::from(info.physical_sector_offset);
    let aligned = if off != 0 && ps > off {
        (ps - off) / bs
    } else {
        0
    };
    let mut b14 = ((aligned >> 8) & 0x3f) as u8;
    if lun.can_unmap() {
        b14 |= 0x80 | 0x40; // LBPME, LBPRZ
    }
    d[14] = b14;
    d[15] = aligned as u8;
    d
}

/// Caching mode page (0x08): write cache enabled (a SYNCHRONIZE CACHE
/// makes writes stable), read cache on; nothing changeable.
fn caching_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x08;
    p[1] = 0x12;
    if !changeable {
        p[2] = 0x04; // WCE
    }
    p
}

/// Control mode page (0x0a): fixed-format sense, unrestricted reordering
/// of simple commands.
fn control_page(changeable: bool) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p[0] = 0x0a;
    p[1] = 0x0a;
    if !changeable {
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1
        p[8..10].copy_from_slice(&0xffffu16.to_be_bytes()); // busy timeout
    }
    p
}

/// MODE SENSE(6)/(10) data for `page` (0x3f: all), or None for a page or
/// subpage we do not have.
pub fn mode_sense(
    lun: &LunInfo,
    ten: bool,
    dbd: bool,
    changeable: bool,
    page: u8,
    subpage: u8,
) -> Option<Vec<u8>> {
    let pages = match (page, subpage) {
        (0x08, 0) => caching_page(changeable),
        (0x0a, 0) => control_page(changeable),
        (0x3f, 0 | 0xff) => {
            let mut v = caching_page(changeable);
            v.extend(control_page(changeable));
            v
        }
        _ => return None,
    };
    let mut bd = Vec::new();
    if !dbd {
        // Short LBA block descriptor (SBC-3 §6.4.2.2): blocks (all ones
        // when too many), a reserved byte, the 24-bit block length; the
        // block length's top byte is that reserved 0.
        let blocks = u32::try_from(lun.blocks()).unwrap_or(u32::MAX);
        bd.extend_from_slice(&blocks.to_be_bytes());
        bd.extend_from_slice(&(lun.block_size() as u32).to_be_bytes());
    }
    // Device-specific parameter: WP, DPOFUA (FUA is honoured).
    let dsp = if lun.info.read_only { 0x80 } else { 0 } | 0x10;
    let mut d = Vec::new();
    if ten {
        d.extend_from_slice(&[0, 0, 0, dsp, 0, 0]);
        d.extend_from_slice(&(bd.len() as u16).to_be_bytes());
    } else {
        d.extend_from_slice(&[0, 0, dsp, bd.len() as u8]);
    }
    d.extend(bd);
    d.extend(pages);
    // MODE DATA LENGTH excludes itself.
    if ten {
        let l = (d.len() - 2) as u16;
        d[0..2].copy_from_slice(&l.to_be_bytes());
    } else {
        d[0] = (d.len() - 1) as u8;
    }
    Some(d)
}
