//! The MCFG: where PCI Express enhanced configuration space (ECAM) is
//! (PCI Firmware Specification 3.2 §4.1.2), one allocation for segment 0
//! as bhyve's `build_mcfg` writes it.

use super::pci::PciRootSpec;
use super::sdt::{finish, header, Put};

pub const MCFG_REVISION: u8 = 1;
/// Header, 8 reserved bytes, one 16-byte allocation.
pub const MCFG_LEN: usize = 36 + 8 + 16;

/// MCFG for buses 0..=`ecam_end_bus` at `ecam_base`.
pub fn mcfg(p: &PciRootSpec) -> Vec<u8> {
    let mut t = header(b"MCFG", MCFG_REVISION);
    t.u64(0); // reserved
    t.u64(p.ecam_base);
    t.u16(0); // PCI segment group
    t.u8(0); // start bus
    t.u8(p.ecam_end_bus);
    t.u32(0); // reserved
    debug_assert_eq!(t.len(), MCFG_LEN);
    finish(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_allocation_for_segment_0() {
        let mut p = PciRootSpec::new();
        p.ecam_end_bus = 0x3f;
        let t = mcfg(&p);
        assert_eq!(t.len(), MCFG_LEN);
        assert_eq!(&t[..4], b"MCFG");
        assert_eq!(t[8], 1);
        assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        assert_eq!(&t[36..44], [0; 8]);
        assert_eq!(&t[44..52], 0xe000_0000u64.to_le_bytes());
        assert_eq!(&t[52..56], [0, 0, 0, 0x3f]);
        assert_eq!(&t[56..60], [0; 4]);
    }
}
