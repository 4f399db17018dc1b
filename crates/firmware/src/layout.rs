//! bhyve's guest physical memory layout and the e820 map built from it.
//!
//! Guest RAM is one object (a file mapped `MAP_SHARED`): its first
//! `lowmem` bytes appear at guest physical 0, the rest at 4 GiB. Low
//! memory stops at 3 GiB (bhyve's `VM_LOWMEM_LIMIT`) so that the hole up
//! to 4 GiB is free for PCI BARs, the IOAPIC/HPET/local APIC and the BIOS
//! ROM.

/// Largest low-memory part: bhyve's lowmem limit.
pub const LOWMEM_LIMIT: u64 = 3 << 30;
/// Where memory above the PCI hole starts.
pub const HIGHMEM_BASE: u64 = 4 << 30;
/// Start of the legacy VGA/option-ROM/BIOS hole (640 KiB).
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// End of the legacy hole (1 MiB).
pub const LEGACY_HOLE_END: u64 = 0x10_0000;
/// Smallest memory the layout accepts: the loaders need RAM above 1 MiB.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Largest memory accepted: keeps every guest physical address below
/// 2^46, which every x86-64 CPU with VT-x/AMD-V can address.
pub const MAX_MEMORY: u64 = (1 << 46) - HIGHMEM_BASE;
/// bhyve's PCI ECAM window (256 buses), reserved in the e820 map.
pub const ECAM_BASE: u64 = 0xe000_0000;
pub const ECAM_SIZE: u64 = 256 << 20;
/// Guest RAM is mapped in pages.
pub const PAGE_SIZE: u64 = 4096;

/// e820 memory types (ACPI "Address Range Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
}

/// One e820 entry: `[addr, addr + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

/// One contiguous piece of guest RAM and where it lives in the RAM object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    pub gpa: u64,
    pub len: u64,
    pub file_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("memory size {0:#x} is too small (minimum {MIN_MEMORY:#x})")]
    TooSmall(u64),
    #[error("memory size {0:#x} is too large (maximum {MAX_MEMORY:#x})")]
    TooLarge(u64),
    #[error("memory size {0:#x} is not a multiple of the page size")]
    Unaligned(u64),
}

/// Guest RAM split around the PCI hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemLayout {
    lowmem: u64,
    highmem: u64,
}

impl MemLayout {
    /// The layout bhyve uses for `size` bytes of guest RAM.
    pub fn new(size: u64) -> Result<Self, LayoutError> {
        if size < MIN_MEMORY {
            return Err(LayoutError::TooSmall(size));
        }
        if size > MAX_MEMORY {
            return Err(LayoutError::TooLarge(size));
        }
        if !size.is_multiple_of(PAGE_SIZE) {
            return Err(LayoutError::Unaligned(size));
        }
        let lowmem = size.min(LOWMEM_LIMIT);
        Ok(MemLayout {
            lowmem,
            highmem: size - lowmem,
        })
    }

    /// Bytes of RAM below the PCI hole, mapped at guest physical 0.
    pub fn lowmem(&self) -> u64 {
        self.lowmem
    }

    /// Bytes of RAM mapped at 4 GiB.
    pub fn highmem(&self) -> u64 {
        self.highmem
    }

    /// Total guest RAM.
    pub fn size(&self) -> u64 {
        self.lowmem + self.highmem
    }

    /// The RAM pieces in guest-physical order; file offsets follow the
    /// same order (low part first).
    pub fn regions(&self) -> Vec<MemRegion> {
        let mut v = vec![MemRegion {
            gpa: 0,
            len: self.lowmem,
            file_offset: 0,
        }];
        if self.highmem > 0 {
            v.push(MemRegion {
                gpa: HIGHMEM_BASE,
                len: self.highmem,
                file_offset: self.lowmem,
            });
        }
        v
    }

    /// The e820 map handed to guests, sorted by address: RAM below 640
    /// KiB, the legacy VGA/ROM/BIOS area reserved (bhyve keeps its ACPI
    /// tables and BIOS there), RAM from 1 MiB to the top of low memory and
    /// RAM above 4 GiB.
    pub fn e820(&self) -> Vec<E820Entry> {
        let mut v = vec![
            E820Entry {
                addr: 0,
                size: LEGACY_HOLE_START,
                kind: E820Type::Ram,
            },
            E820Entry {
                addr: LEGACY_HOLE_START,
                size: LEGACY_HOLE_END - LEGACY_HOLE_START,
                kind: E820Type::Reserved,
            },
            E820Entry {
                addr: LEGACY_HOLE_END,
                size: self.lowmem - LEGACY_HOLE_END,
                kind: E820Type::Ram,
            },
        ];
        // The PCI ECAM window: not RAM, and Linux only trusts an MCFG
        // region the firmware also reserves.
        v.push(E820Entry {
            addr: ECAM_BASE,
            size: ECAM_SIZE,
            kind: E820Type::Reserved,
        });
        if self.highmem > 0 {
            v.push(E820Entry {
                addr: HIGHMEM_BASE,
                size: self.highmem,
                kind: E820Type::Ram,
            });
        }
        v
    }

    /// Whether `[addr, addr + len)` lies inside one RAM e820 entry.
    pub fn is_usable_ram(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.e820()
            .iter()
            .any(|e| e.kind == E820Type::Ram && addr >= e.addr && end <= e.addr + e.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_all_low() {
        let l = MemLayout::new(256 << 20).unwrap();
        assert_eq!((l.lowmem(), l.highmem()), (256 << 20, 0));
        assert_eq!(
            l.regions(),
            vec![MemRegion {
                gpa: 0,
                len: 256 << 20,
                file_offset: 0
            }]
        );
        let e = l.e820();
        assert_eq!(e.len(), 4);
        assert_eq!(
            (e[0].addr, e[0].size, e[0].kind),
            (0, 0xa0000, E820Type::Ram)
        );
        assert_eq!(
            (e[1].addr, e[1].size, e[1].kind),
            (0xa0000, 0x60000, E820Type::Reserved)
        );
        assert_eq!((e[2].addr, e[2].size), (0x100000, (256 << 20) - 0x100000));
    }

    #[test]
    fn large_memory_splits_at_3g() {
        let l = MemLayout::new(8 << 30).unwrap();
        assert_eq!((l.lowmem(), l.highmem()), (3 << 30, 5 << 30));
        let r = l.regions();
        assert_eq!(
            r[1],
            MemRegion {
                gpa: 4 << 30,
                len: 5 << 30,
                file_offset: 3 << 30
            }
        );
        let e = l.e820();
        assert_eq!(e.last().unwrap().addr, 4 << 30);
        assert_eq!(e.last().unwrap().size, 5 << 30);
        assert_eq!(
            e.iter()
                .filter(|x| x.kind == E820Type::Ram)
                .map(|x| x.size)
                .sum::<u64>(),
            (8 << 30) - 0x60000
        );
        assert!(l.is_usable_ram(0x100000, 0x1000));
        assert!(!l.is_usable_ram(0xa0000, 1));
        assert!(!l.is_usable_ram((3 << 30) - 4, 8));
        assert!(!l.is_usable_ram(u64::MAX, 2));
    }

    #[test]
    fn exactly_3g_has_no_highmem() {
        let l = MemLayout::new(3 << 30).unwrap();
        assert_eq!(l.highmem(), 0);
        assert_eq!(l.regions().len(), 1);
        assert_eq!(l.e820().len(), 4);
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(MemLayout::new(0), Err(LayoutError::TooSmall(0)));
        assert!(matches!(
            MemLayout::new(MIN_MEMORY + 1),
            Err(LayoutError::Unaligned(_))
        ));
        assert!(matches!(
            MemLayout::new(!0xfff),
            Err(LayoutError::TooLarge(_))
        ));
    }
}
