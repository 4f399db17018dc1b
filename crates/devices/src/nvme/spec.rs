//! NVMe 1.4 wire formats: submission queue entries, completion status
//! codes, opcodes. Everything here is decoded from untrusted bytes and
//! never fails: meaning is checked by the command handlers.

/// Bytes of a submission and a completion queue entry (the only sizes
/// the controller supports: IOSQES = 6, IOCQES = 4).
pub const SQE_SIZE: u64 = 64;
pub const CQE_SIZE: u64 = 16;
pub const SQES_LOG2: u32 = 6;
pub const CQES_LOG2: u32 = 4;
/// Memory page size (CAP.MPSMIN = CAP.MPSMAX = 0: 4 KiB only).
pub const PAGE: u64 = 4096;

/// A submission queue entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    pub opc: u8,
    /// FUSE (bits 1:0) and PSDT (bits 7:6).
    pub flags: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

fn u32_at(b: &[u8; 64], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8; 64], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl Command {
    pub fn parse(b: &[u8; 64]) -> Self {
        Command {
            opc: b[0],
            flags: b[1],
            cid: u16::from_le_bytes([b[2], b[3]]),
            nsid: u32_at(b, 4),
            prp1: u64_at(b, 24),
            prp2: u64_at(b, 32),
            cdw10: u32_at(b, 40),
            cdw11: u32_at(b, 44),
            cdw12: u32_at(b, 48),
            cdw13: u32_at(b, 52),
            cdw14: u32_at(b, 56),
            cdw15: u32_at(b, 60),
        }
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = self.opc;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.cid.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (i, v) in [
            self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15,
        ]
        .iter()
        .enumerate()
        {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// PRP or SGL Data Transfer: 0 means PRPs, the only kind bhyve (and
    /// this controller, SGLS = 0) supports.
    pub fn psdt(&self) -> u8 {
        self.flags >> 6
    }

    /// Fused operation bits (FUSES = 0: none supported).
    pub fn fuse(&self) -> u8 {
        self.flags & 3
    }
}

/// Admin command opcodes.
pub mod admin {
    pub const DELETE_SQ: u8 = 0x00;
    pub const CREATE_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_CQ: u8 = 0x04;
    pub const CREATE_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT: u8 = 0x0c;
    pub const FW_COMMIT: u8 = 0x10;
    pub const FW_DOWNLOAD: u8 = 0x11;
    pub const FORMAT_NVM: u8 = 0x80;
    pub const SECURITY_SEND: u8 = 0x81;
    pub const SECURITY_RECV: u8 = 0x82;
    pub const SANITIZE: u8 = 0x84;
    pub const GET_LBA_STATUS: u8 = 0x86;
}

/// NVM command set opcodes.
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DSM: u8 = 0x09;
}

/// Feature identifiers.
pub mod feat {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MGMT: u8 = 0x02;
    pub const TEMP_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WC: u8 = 0x06;
    pub const NUM_QUEUES: u8 = 0x07;
    pub const IRQ_COALESCING: u8 = 0x08;
    pub const IRQ_VECTOR_CONFIG: u8 = 0x09;
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
}

/// A completion's status field (bits 31:17 of DW3 shifted down): status
/// code in bits 7:0, status code type in bits 10:8, Do Not Retry in 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

const DNR: u16 = 1 << 14;
const CMD_SPECIFIC: u16 = 1 << 8;

impl Status {
    pub const SUCCESS: Status = Status(0);
    pub const INVALID_OPCODE: Status = Status(0x01 | DNR);
    pub const INVALID_FIELD: Status = Status(0x02 | DNR);
    pub const DATA_TRANSFER_ERROR: Status = Status(0x04);
    pub const INTERNAL_ERROR: Status = Status(0x06);
    pub const INVALID_NAMESPACE: Status = Status(0x0b | DNR);
    pub const SEQUENCE_ERROR: Status = Status(0x0c | DNR);
    pub const INVALID_PRP_OFFSET: Status = Status(0x13 | DNR);
    pub const NS_WRITE_PROTECTED: Status = Status(0x20 | DNR);
    pub const LBA_OUT_OF_RANGE: Status = Status(0x80 | DNR);
    pub const CQ_INVALID: Status = Status(CMD_SPECIFIC | DNR);
    pub const INVALID_QID: Status = Status(CMD_SPECIFIC | 0x01 | DNR);
    pub const INVALID_QUEUE_SIZE: Status = Status(CMD_SPECIFIC | 0x02 | DNR);
    pub const AER_LIMIT: Status = Status(CMD_SPECIFIC | 0x05 | DNR);
    pub const INVALID_FW_SLOT: Status = Status(CMD_SPECIFIC | 0x06 | DNR);
    pub const INVALID_VECTOR: Status = Status(CMD_SPECIFIC | 0x08 | DNR);
    pub const INVALID_LOG_PAGE: Status = Status(CMD_SPECIFIC | 0x09 | DNR);
    pub const INVALID_FORMAT: Status = Status(CMD_SPECIFIC | 0x0a | DNR);
    pub const INVALID_QUEUE_DELETION: Status = Status(CMD_SPECIFIC | 0x0c | DNR);
    pub const FEATURE_NOT_SAVEABLE: Status = Status(CMD_SPECIFIC | 0x0d | DNR);
    pub const FEATURE_NOT_NS_SPECIFIC: Status = Status(CMD_SPECIFIC | 0x0f | DNR);

    pub fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }

    /// Status code type and status code, without the retry bit.
    pub fn code(self) -> (u8, u8) {
        (((self.0 >> 8) & 7) as u8, self.0 as u8)
    }
}

/// A completion queue entry ready to be written (the phase bit is added
/// when it is posted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub dw0: u32,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
}

impl Completion {
    /// The entry's bytes with head pointer `sqhd` and phase `phase`.
    pub fn to_bytes(&self, sqhd: u16, phase: bool) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        b[8..10].copy_from_slice(&sqhd.to_le_bytes());
        b[10..12].copy_from_slice(&self.sqid.to_le_bytes());
        let dw3 = u32::from(self.cid) | (u32::from(phase) << 16) | (u32::from(self.status.0) << 17);
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip() {
        let c = Command {
            opc: 2,
            flags: 0x40,
            cid: 0x1234,
            nsid: 1,
            prp1: 0x1000,
            prp2: 0xdead_b000,
            cdw10: 7,
            cdw11: 8,
            cdw12: 9,
            cdw13: 10,
            cdw14: 11,
            cdw15: 12,
        };
        assert_eq!(Command::parse(&c.to_bytes()), c);
        assert_eq!(c.psdt(), 1);
    }

    #[test]
    fn completion_layout() {
        let c = Completion {
            dw0: 0xaabbccdd,
            sqid: 3,
            cid: 0x55,
            status: Status::INVALID_QID,
        };
        let b = c.to_bytes(9, true);
        let dw3 = u32::from_le_bytes(b[12..16].try_into().unwrap());
        assert_eq!(dw3 & 0xffff, 0x55);
        assert_eq!((dw3 >> 16) & 1, 1);
        // SC 1, SCT 1, DNR.
        assert_eq!((dw3 >> 17) & 0xff, 1);
        assert_eq!((dw3 >> 25) & 7, 1);
        assert_eq!(dw3 >> 31, 1);
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 9);
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 3);
        assert!(!Status::INVALID_QID.is_success());
        assert!(Status::SUCCESS.is_success());
    }
}
