//! The pieces every table shares: the 36-byte System Description Table
//! header, checksums, the Generic Address Structure; and the root of the
//! tree (RSDP, RSDT, XSDT).

/// Length of the System Description Table header.
pub const HEADER_LEN: usize = 36;
/// Length of an ACPI 2.0+ RSDP.
pub const RSDP_LEN: usize = 36;
/// RSDP fields: checksum (first 20 bytes), RSDT and XSDT addresses,
/// extended checksum (all 36 bytes).
pub const RSDP_CHECKSUM_OFFSET: usize = 8;
pub const RSDP_V1_LEN: usize = 20;
pub const RSDP_RSDT_OFFSET: usize = 16;
pub const RSDP_XSDT_OFFSET: usize = 24;
pub const RSDP_EXT_CHECKSUM_OFFSET: usize = 32;
/// Offset of the checksum byte in a table header.
pub const CHECKSUM_OFFSET: usize = 9;

/// bhyve's OEM ID, on every table.
pub const OEM_ID: &[u8; 6] = b"BHYVE ";
/// Who generated the tables (bhyve's own generator says "BASL").
pub const CREATOR_ID: &[u8; 4] = b"BHYV";
pub const CREATOR_REVISION: u32 = 1;
pub const OEM_REVISION: u32 = 1;

/// Address space IDs of a Generic Address Structure.
pub const GAS_SYSTEM_MEMORY: u8 = 0;
pub const GAS_SYSTEM_IO: u8 = 1;
/// Access sizes of a Generic Address Structure.
pub const GAS_ACCESS_UNDEFINED: u8 = 0;
pub const GAS_ACCESS_BYTE: u8 = 1;
pub const GAS_ACCESS_WORD: u8 = 2;
pub const GAS_ACCESS_DWORD: u8 = 3;

/// The byte that makes `bytes` sum to 0 (mod 256).
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b))
        .wrapping_neg()
}

/// Appends the little-endian bytes of integers to a table.
pub trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn u64(&mut self, v: u64);
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// A Generic Address Structure (12 bytes).
pub fn gas(t: &mut Vec<u8>, space: u8, bit_width: u8, access: u8, address: u64) {
    t.extend_from_slice(&[space, bit_width, 0, access]);
    t.u64(address);
}

/// An all-zero Generic Address Structure: "not present".
pub fn gas_none(t: &mut Vec<u8>) {
    t.extend_from_slice(&[0; 12]);
}

/// A table header with length and checksum still 0; [`finish`] fills
/// them once the body is complete. The OEM table ID is bhyve's "BV" +
/// signature.
pub fn header(signature: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(256);
    t.extend_from_slice(signature);
    t.u32(0);
    t.u8(revision);
    t.u8(0);
    t.extend_from_slice(OEM_ID);
    let mut table_id = *b"BV      ";
    table_id[2..6].copy_from_slice(signature);
    t.extend_from_slice(&table_id);
    t.u32(OEM_REVISION);
    t.extend_from_slice(CREATOR_ID);
    t.u32(CREATOR_REVISION);
    debug_assert_eq!(t.len(), HEADER_LEN);
    t
}

/// Sets the header's length and checksum.
pub fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    t[CHECKSUM_OFFSET] = 0;
    t[CHECKSUM_OFFSET] = checksum(&t);
    t
}

/// The Root System Description Pointer (ACPI 2.0, revision 2): the
/// checksum covers the first 20 bytes (the ACPI 1.0 structure), the
/// extended checksum all 36.
pub fn rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(RSDP_LEN);
    t.extend_from_slice(b"RSD PTR ");
    t.u8(0);
    t.extend_from_slice(OEM_ID);
    t.u8(2);
    t.u32(rsdt);
    t.u32(RSDP_LEN as u32);
    t.u64(xsdt);
    t.u8(0);
    t.extend_from_slice(&[0; 3]);
    t[RSDP_CHECKSUM_OFFSET] = checksum(&t[..RSDP_V1_LEN]);
    t[RSDP_EXT_CHECKSUM_OFFSET] = checksum(&t);
    t
}

/// The RSDT (32-bit pointers).
pub fn rsdt(tables: &[u64]) -> Vec<u8> {
    let mut t = header(b"RSDT", 1);
    for a in tables {
        // Every table lives below 1 MiB (see `super::ACPI_LIMIT`).
        t.u32(*a as u32);
    }
    finish(t)
}

/// The XSDT (64-bit pointers).
pub fn xsdt(tables: &[u64]) -> Vec<u8> {
    let mut t = header(b"XSDT", 1);
    for a in tables {
        t.u64(*a);
    }
    finish(t)
}

pub fn rsdt_len(entries: usize) -> usize {
    HEADER_LEN + 4 * entries
}

pub fn xsdt_len(entries: usize) -> usize {
    HEADER_LEN + 8 * entries
}
