//! The SCSI direct-access target behind virtio-scsi: decodes a CDB for
//! one logical unit into what the transport must do (answer with data,
//! report a CHECK CONDITION, or run I/O on the backend).
//!
//! Linux has no CAM Target Layer, so this plays the part bhyve leaves to
//! ctl(4): SBC-3/SPC-4 as far as Linux, SeaBIOS and other initiators use
//! it. Every field comes from the guest: lengths are checked against the
//! unit's capacity and our limits before anything is allocated.

use crate::blockif::{BlockInfo, BlockOp};

use super::pages;

/// SCSI status codes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Opcodes we implement (SPC-4, SBC-3).
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const VERIFY_16: u8 = 0x8f;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    /// SERVICE ACTION IN(16)'s READ CAPACITY(16).
    pub const SAI_READ_CAPACITY_16: u8 = 0x10;
}

/// Sense data: key, additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Sense { key, asc, ascq }
    }
    pub const NO_SENSE: Sense = Sense::new(0x0, 0, 0);
    pub const INVALID_OPCODE: Sense = Sense::new(0x5, 0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(0x5, 0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(0x5, 0x24, 0x00);
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(0x5, 0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAM: Sense = Sense::new(0x5, 0x26, 0x00);
    pub const PARAM_LIST_LENGTH: Sense = Sense::new(0x5, 0x1a, 0x00);
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(0x5, 0x39, 0x00);
    pub const WRITE_PROTECTED: Sense = Sense::new(0x7, 0x27, 0x00);
    pub const UNRECOVERED_READ_ERROR: Sense = Sense::new(0x3, 0x11, 0x00);
    pub const WRITE_ERROR: Sense = Sense::new(0x3, 0x0c, 0x00);

    /// Fixed-format sense data (SPC-4 §4.5.3), 18 bytes.
    pub fn fixed(&self) -> [u8; 18] {
        let mut s = [0u8; 18];
        s[0] = 0x70; // current error, fixed format
        s[2] = self.key & 0x0f;
        s[7] = 10; // additional length
        s[12] = self.asc;
        s[13] = self.ascq;
        s
    }
}

/// One logical unit as the command set sees it.
#[derive(Debug, Clone)]
pub struct LunInfo {
    pub info: BlockInfo,
    /// Unit serial number (VPD 0x80) and the device identifier's suffix.
    pub serial: String,
}

impl LunInfo {
    /// Logical block size (never 0, so divisions are safe).
    pub fn block_size(&self) -> u64 {
        u64::from(self.info.sector_size.max(512))
    }

    pub fn blocks(&self) -> u64 {
        self.info.size / self.block_size()
    }

    /// UNMAP and WRITE SAME with UNMAP may deallocate.
    pub fn can_unmap(&self) -> bool {
        self.info.can_delete && !self.info.read_only
    }
}

/// Most bytes one READ/WRITE may move: virtio-scsi's `max_sectors`
/// (0xffff sectors of 512 bytes), also reported in the Block Limits VPD.
pub const MAX_TRANSFER_BYTES: u64 = 0xffff * 512;
/// Per UNMAP descriptor and per WRITE SAME (as virtio-blk's limit).
pub const MAX_UNMAP_BYTES: u64 = 16 << 20;
/// UNMAP block descriptors per command.
pub const MAX_UNMAP_DESCRIPTORS: usize = 16;

/// What the transport must do for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// GOOD; data-in (already cut to the allocation length).
    Data(Vec<u8>),
    /// GOOD, no data.
    Good,
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// Backend I/O: `op` over `len` bytes at byte `offset`. Reads move
    /// data-in, writes data-out.
    Io {
        op: BlockOp,
        offset: u64,
        len: u64,
        fua: bool,
    },
    /// UNMAP: the parameter list (data-out, at most `param_len` bytes)
    /// names the ranges; see [`unmap_ranges`].
    Unmap { param_len: u32 },
    /// WRITE SAME: one block of data-out (unless `ndob`) repeated over
    /// `len` bytes at `offset`; only an all-zero block is supported.
    WriteSame {
        offset: u64,
        len: u64,
        unmap: bool,
        ndob: bool,
    },
}

fn be16(b: &[u8]) -> u64 {
    u64::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// How many bytes of each CDB we read (shorter CDBs are refused); None
/// for the reserved and vendor-specific groups, which we do not implement.
fn cdb_len(opcode: u8) -> Option<usize> {
    match opcode >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Data-in cut to the allocation length.
fn data(mut v: Vec<u8>, alloc: u64) -> Action {
    v.truncate(usize::try_from(alloc).unwrap_or(usize::MAX));
    Action::Data(v)
}

/// Decodes `cdb` for `lun` (None: the LUN does not exist on an existing
/// target; `luns` lists the ones that do, for REPORT LUNS).
pub fn decode(cdb: &[u8], lun: Option<&LunInfo>, luns: &[u16]) -> Action {
    let Some(&opcode) = cdb.first() else {
        return Action::Check(Sense::INVALID_OPCODE);
    };
    match cdb_len(opcode) {
        None => return Action::Check(Sense::INVALID_OPCODE),
        Some(n) if cdb.len() < n => return Action::Check(Sense::INVALID_FIELD_IN_CDB),
        Some(_) => {}
    }
    // Commands any LUN answers (SPC-4 §4.6.4: an absent LUN still
    // reports its absence through INQUIRY and lists its peers).
    match opcode {
        op::INQUIRY => return inquiry(cdb, lun),
        op::REPORT_LUNS => {
            let alloc = be32(&cdb[6..10]);
            if alloc < 16 || cdb[2] > 2 {
                return Action::Check(Sense::INVALID_FIELD_IN_CDB);
            }
            return data(pages::report_luns(luns), alloc);
        }
        op::REQUEST_SENSE => {
            // Sense is always returned with the command (autosense).
            let sense = if lun.is_some() {
                Sense::NO_SENSE
            } else {
                Sense::LUN_NOT_SUPPORTED
            };
            return data(sense.fixed().to_vec(), u64::from(cdb[4]));
        }
        _ => {}
    }
    let Some(lun) = lun else {
        return Action::Check(Sense::LUN_NOT_SUPPORTED);
    };
    match opcode {
        op::TEST_UNIT_READY | op::START_STOP_UNIT | op::PREVENT_ALLOW => Action::Good,
        op::READ_CAPACITY_10 => data(pages::read_capacity_10(lun), 8),
        op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == op::SAI_READ_CAPACITY_16 => {
            data(pages::read_capacity_16(lun), be32(&cdb[10..14]))
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => mode_sense(cdb, lun),
        op::READ_6 | op::WRITE_6 => {
            let lba = (u64::from(cdb[1] & 0x1f) << 16) | be16(&cdb[2..4]);
            // A length of 0 means 256 blocks for the 6-byte commands.
            let n = if cdb[4] == 0 { 256 } else { u64::from(cdb[4]) };
            rw(lun, opcode == op::WRITE_6, lba, n, false)
        }
        op::READ_10 | op::WRITE_10 => rw(
            lun,
            opcode == op::WRITE_10,
            be32(&cdb[2..6]),
            be16(&cdb[7..9]),
            cdb[1] & 0x08 != 0,
        ),
        op::READ_12 | op::WRITE_12 => rw(
            lun,
            opcode == op::WRITE_12,
            be32(&cdb[2..6]),
            be32(&cdb[6..10]),
            cdb[1] & 0x08 != 0,
        ),
        op::READ_16 | op::WRITE_16 => rw(
            lun,
            opcode == op::WRITE_16,
            be64(&cdb[2..10]),
            be32(&cdb[10..14]),
            cdb[1] & 0x08 != 0,
        ),
        op::VERIFY_10 | op::VERIFY_16 => {
            let (lba, n) = if opcode == op::VERIFY_10 {
                (be32(&cdb[2..6]), be16(&cdb[7..9]))
            } else {
                (be64(&cdb[2..10]), be32(&cdb[10..14]))
            };
            // BYTCHK (compare with data-out) is not implemented; the
            // medium itself has nothing to verify.
            if cdb[1] & 0x06 != 0 {
                Action::Check(Sense::INVALID_FIELD_IN_CDB)
            } else if !in_range(lun, lba, n) {
                Action::Check(Sense::LBA_OUT_OF_RANGE)
            } else {
                Action::Good
            }
        }
        op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => Action::Io {
            op: BlockOp::Flush,
            offset: 0,
            len: 0,
            fua: false,
        },
        op::UNMAP => {
            if !lun.can_unmap() {
                return Action::Check(if lun.info.read_only {
                    Sense::WRITE_PROTECTED
                } else {
                    Sense::INVALID_OPCODE
                });
            }
            // ANCHOR is not supported (Block Limits says so).
            if cdb[1] & 0x01 != 0 {
                return Action::Check(Sense::INVALID_FIELD_IN_CDB);
            }
            match be16(&cdb[7..9]) as u32 {
                0 => Action::Good,
                param_len => Action::Unmap { param_len },
            }
        }
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            let (lba, n) = if opcode == op::WRITE_SAME_10 {
                (be32(&cdb[2..6]), be16(&cdb[7..9]))
            } else {
                (be64(&cdb[2..10]), be32(&cdb[10..14]))
            };
            let unmap = cdb[1] & 0x08 != 0;
            // NDOB exists in WRITE SAME(16) only.
            let ndob = opcode == op::WRITE_SAME_16 && cdb[1] & 0x01 != 0;
            write_same(lun, lba, n, unmap, ndob, cdb[1] & 0x06 != 0)
        }
        _ => Action::Check(Sense::INVALID_OPCODE),
    }
}

fn in_range(lun: &LunInfo, lba: u64, n: u64) -> bool {
    let blocks = lun.blocks();
    lba <= blocks && n <= blocks - lba
}

fn rw(lun: &LunInfo, write: bool, lba: u64, n: u64, fua: bool) -> Action {
    if write && lun.info.read_only {
        return Action::Check(Sense::WRITE_PROTECTED);
    }
    if !in_range(lun, lba, n) {
        return Action::Check(Sense::LBA_OUT_OF_RANGE);
    }
    let len = n * lun.block_size();
    if len > MAX_TRANSFER_BYTES {
        return Action::Check(Sense::INVALID_FIELD_IN_CDB);
    }
    if len == 0 {
        return Action::Good;
    }
    Action::Io {
        op: if write { BlockOp::Write } else { BlockOp::Read },
        offset: lba * lun.block_size(),
        len,
        fua: fua && write,
    }
}

fn write_same(lun: &LunInfo, lba: u64, n: u64, unmap: bool, ndob: bool, obsolete: bool) -> Action {
    if lun.info.read_only {
        return Action::Check(Sense::WRITE_PROTECTED);
    }
    // n == 0 ("to the end") is refused: Block Limits sets WSNZ. The
    // obsolete PBDATA/LBDATA bits are not supported.
    if n == 0 || obsolete || n * lun.block_size() > MAX_UNMAP_BYTES {
        return Action::Check(Sense::INVALID_FIELD_IN_CDB);
    }
    if !in_range(lun, lba, n) {
        return Action::Check(Sense::LBA_OUT_OF_RANGE);
    }
    Action::WriteSame {
        offset: lba * lun.block_size(),
        len: n * lun.block_size(),
        unmap: unmap && lun.can_unmap(),
        ndob,
    }
}

fn inquiry(cdb: &[u8], lun: Option<&LunInfo>) -> Action {
    let alloc = be16(&cdb[3..5]);
    let evpd = cdb[1] & 0x01 != 0;
    // CMDDT (obsolete) and a page code without EVPD are invalid.
    if cdb[1] & 0x02 != 0 || (!evpd && cdb[2] != 0) {
        return Action::Check(Sense::INVALID_FIELD_IN_CDB);
    }
    let Some(lun) = lun else {
        if evpd {
            return Action::Check(Sense::LUN_NOT_SUPPORTED);
        }
        return data(pages::standard_inquiry(None), alloc);
    };
    if !evpd {
        return data(pages::standard_inquiry(Some(lun)), alloc);
    }
    match pages::vpd(lun, cdb[2]) {
        Some(p) => data(p, alloc),
        None => Action::Check(Sense::INVALID_FIELD_IN_CDB),
    }
}

fn mode_sense(cdb: &[u8], lun: &LunInfo) -> Action {
    let ten = cdb[0] == op::MODE_SENSE_10;
    let dbd = cdb[1] & 0x08 != 0;
    let pc = cdb[2] >> 6;
    let page = cdb[2] & 0x3f;
    let subpage = cdb[3];
    let alloc = if ten {
        be16(&cdb[7..9])
    } else {
        u64::from(cdb[4])
    };
    if pc == 3 {
        return Action::Check(Sense::SAVING_NOT_SUPPORTED);
    }
    match pages::mode_sense(lun, ten, dbd, pc == 1, page, subpage) {
        Some(v) => data(v, alloc),
        None => Action::Check(Sense::INVALID_FIELD_IN_CDB),
    }
}

/// The (byte offset, byte length) ranges of an UNMAP parameter list
/// (SBC-3 §5.28.2), checked against the unit and our limits.
pub fn unmap_ranges(lun: &LunInfo, param: &[u8]) -> Result<Vec<(u64, u64)>, Sense> {
    if param.len() < 8 {
        // A list too short for its header is a length error.
        return Err(Sense::PARAM_LIST_LENGTH);
    }
    let desc_len = be16(&param[2..4]) as usize;
    if desc_len / 16 > MAX_UNMAP_DESCRIPTORS {
        return Err(Sense::INVALID_FIELD_IN_PARAM);
    }
    let descs = param.get(8..8 + desc_len).ok_or(Sense::PARAM_LIST_LENGTH)?;
    if descs.len() % 16 != 0 {
        return Err(Sense::PARAM_LIST_LENGTH);
    }
    let bs = lun.block_size();
    let mut out = Vec::new();
    for d in descs.chunks_exact(16) {
        let (lba, n) = (be64(&d[0..8]), be32(&d[8..12]));
        if !in_range(lun, lba, n) {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        if n * bs > MAX_UNMAP_BYTES {
            return Err(Sense::INVALID_FIELD_IN_PARAM);
        }
        if n > 0 {
            out.push((lba * bs, n * bs));
        }
    }
    Ok(out)
}

/// The largest UNMAP parameter list worth reading.
pub const MAX_UNMAP_PARAM: usize = 8 + 16 * MAX_UNMAP_DESCRIPTORS;

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
