//! 82545EM register offsets and bits (Intel's 8254x software developer's
//! manual; the names of FreeBSD's `e1000_regs.h` / `e1000_defines.h`).

pub const CTRL: u32 = 0x0000;
/// An alias of CTRL the 82542 had; drivers of later parts still write it.
pub const CTRL_DUP: u32 = 0x0004;
pub const STATUS: u32 = 0x0008;
pub const EECD: u32 = 0x0010;
pub const EERD: u32 = 0x0014;
pub const CTRL_EXT: u32 = 0x0018;
pub const MDIC: u32 = 0x0020;
pub const FCAL: u32 = 0x0028;
pub const FCAH: u32 = 0x002c;
pub const FCT: u32 = 0x0030;
pub const VET: u32 = 0x0038;
pub const ICR: u32 = 0x00c0;
pub const ITR: u32 = 0x00c4;
pub const ICS: u32 = 0x00c8;
pub const IMS: u32 = 0x00d0;
pub const IMC: u32 = 0x00d8;
pub const RCTL: u32 = 0x0100;
pub const FCTTV: u32 = 0x0170;
pub const TXCW: u32 = 0x0178;
pub const TCTL: u32 = 0x0400;
pub const TIPG: u32 = 0x0410;
pub const AIT: u32 = 0x0458;
pub const LEDCTL: u32 = 0x0e00;
pub const PBA: u32 = 0x1000;
pub const FCRTL: u32 = 0x2160;
pub const FCRTH: u32 = 0x2168;
pub const RDBAL: u32 = 0x2800;
pub const RDBAH: u32 = 0x2804;
pub const RDLEN: u32 = 0x2808;
pub const RDH: u32 = 0x2810;
pub const RDT: u32 = 0x2818;
pub const RDTR: u32 = 0x2820;
pub const RXDCTL: u32 = 0x2828;
pub const RADV: u32 = 0x282c;
pub const RSRPD: u32 = 0x2c00;
pub const TDBAL: u32 = 0x3800;
pub const TDBAH: u32 = 0x3804;
pub const TDLEN: u32 = 0x3808;
pub const TDH: u32 = 0x3810;
pub const TDT: u32 = 0x3818;
pub const TIDV: u32 = 0x3820;
pub const TXDCTL: u32 = 0x3828;
pub const TADV: u32 = 0x382c;
/// Statistics: 64 read-to-clear counters.
pub const STATS_BASE: u32 = 0x4000;
pub const STATS_END: u32 = 0x4100;
pub const RXCSUM: u32 = 0x5000;
/// Multicast table: 128 words.
pub const MTA: u32 = 0x5200;
/// Receive addresses: 16 (RAL, RAH) pairs.
pub const RAL0: u32 = 0x5400;
pub const RA_END: u32 = 0x5480;
/// VLAN filter table: 128 words.
pub const VFTA: u32 = 0x5600;
pub const MANC: u32 = 0x5820;

pub const CTRL_RST: u32 = 1 << 26;
pub const CTRL_VME: u32 = 1 << 30;

pub const STATUS_FD: u32 = 1 << 0;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_1000: u32 = 2 << 6;

pub const EECD_SK: u32 = 1 << 0;
pub const EECD_CS: u32 = 1 << 1;
pub const EECD_DI: u32 = 1 << 2;
pub const EECD_DO: u32 = 1 << 3;
pub const EECD_FWE_EN: u32 = 2 << 4;
pub const EECD_REQ: u32 = 1 << 6;
pub const EECD_GNT: u32 = 1 << 7;
pub const EECD_PRES: u32 = 1 << 8;

/// EERD in the 8254x layout: start bit 0, done bit 4, word address in
/// bits 15:8, data in 31:16.
pub const EERD_START: u32 = 1 << 0;
pub const EERD_DONE: u32 = 1 << 4;
pub const EERD_ADDR_SHIFT: u32 = 8;
pub const EERD_DATA_SHIFT: u32 = 16;

pub const MDIC_DATA_MASK: u32 = 0xffff;
pub const MDIC_REG_SHIFT: u32 = 16;
pub const MDIC_PHY_SHIFT: u32 = 21;
pub const MDIC_OP_MASK: u32 = 3 << 26;
pub const MDIC_OP_WRITE: u32 = 1 << 26;
pub const MDIC_OP_READ: u32 = 2 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_IE: u32 = 1 << 29;
pub const MDIC_ERROR: u32 = 1 << 30;

pub const ICR_TXDW: u32 = 1 << 0;
pub const ICR_TXQE: u32 = 1 << 1;
pub const ICR_LSC: u32 = 1 << 2;
pub const ICR_RXDMT0: u32 = 1 << 4;
pub const ICR_RXT0: u32 = 1 << 7;
pub const ICR_MDAC: u32 = 1 << 9;
pub const ICR_SRPD: u32 = 1 << 16;

pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
pub const RCTL_LPE: u32 = 1 << 5;
pub const RCTL_LBM_MASK: u32 = 3 << 6;
pub const RCTL_RDMTS_SHIFT: u32 = 8;
pub const RCTL_MO_SHIFT: u32 = 12;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_SZ_MASK: u32 = 3 << 16;
pub const RCTL_VFE: u32 = 1 << 18;
pub const RCTL_BSEX: u32 = 1 << 25;
pub const RCTL_SECRC: u32 = 1 << 26;

pub const TCTL_EN: u32 = 1 << 1;

pub const RAH_AV: u32 = 1 << 31;

/// Statistics counters, as indices into the 64-word block at 0x4000.
pub mod stat {
    pub const MPC: usize = 0x10 / 4;
    pub const PRC64: usize = 0x5c / 4;
    pub const GPRC: usize = 0x74 / 4;
    pub const BPRC: usize = 0x78 / 4;
    pub const MPRC: usize = 0x7c / 4;
    pub const GPTC: usize = 0x80 / 4;
    pub const GORCL: usize = 0x88 / 4;
    pub const GOTCL: usize = 0x90 / 4;
    pub const ROC: usize = 0xac / 4;
    pub const TORL: usize = 0xc0 / 4;
    pub const TOTL: usize = 0xc8 / 4;
    pub const TPR: usize = 0xd0 / 4;
    pub const TPT: usize = 0xd4 / 4;
    pub const PTC64: usize = 0xd8 / 4;
    pub const MPTC: usize = 0xf0 / 4;
    pub const BPTC: usize = 0xf4 / 4;
    pub const TSCTC: usize = 0xf8 / 4;
    /// The low halves of the 64-bit counters; the high half follows.
    pub const PAIRS: [usize; 4] = [GORCL, GOTCL, TORL, TOTL];
}
