//! The HPET description table: where the event timer block is and what
//! it is (its capabilities register's low 32 bits), so that the guest
//! can use it as clock event device and clocksource.

use super::sdt::{finish, gas, header, Put, GAS_ACCESS_UNDEFINED, GAS_SYSTEM_MEMORY};
use super::HpetSpec;

pub const HPET_LEN: usize = 56;
pub const HPET_REVISION: u8 = 1;
/// Page protection: the block's 4 KiB page holds nothing else.
pub const PAGE_PROTECT_4K: u8 = 1;

/// Offsets of the fields after the header.
pub mod off {
    pub const BLOCK_ID: usize = 36;
    pub const ADDRESS: usize = 40;
    pub const NUMBER: usize = 52;
    pub const MIN_TICK: usize = 53;
    pub const FLAGS: usize = 55;
}

pub fn hpet(h: &HpetSpec) -> Vec<u8> {
    let mut t = header(b"HPET", HPET_REVISION);
    t.u32(h.block_id);
    gas(
        &mut t,
        GAS_SYSTEM_MEMORY,
        0,
        GAS_ACCESS_UNDEFINED,
        u64::from(h.base),
    );
    t.u8(0); // HPET number
    t.u16(0); // minimum clock tick in periodic mode
    t.u8(PAGE_PROTECT_4K);
    debug_assert_eq!(t.len(), HPET_LEN);
    finish(t)
}
