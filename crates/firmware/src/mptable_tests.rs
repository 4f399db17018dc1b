use super::*;
use vm_memory::GuestMemoryMmap;

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A decoded entry (the fields a guest's MP parser uses).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Cpu {
        apic_id: u8,
        version: u8,
        flags: u8,
        signature: u32,
        features: u32,
    },
    Bus(u8, [u8; 6]),
    Ioapic {
        id: u8,
        version: u8,
        flags: u8,
        addr: u32,
    },
    Int {
        local: bool,
        int_type: u8,
        flags: u16,
        bus: u8,
        irq: u8,
        dst: u8,
        pin: u8,
    },
}

/// Decodes the image as a guest would find it at `MPTABLE_BASE`: follows
/// the floating pointer, checks both checksums and the entry count.
fn decode(img: &[u8]) -> Vec<Entry> {
    assert_eq!(&img[..4], b"_MP_");
    assert_eq!(img[8], 1, "floating pointer length in paragraphs");
    assert_eq!(img[9], 4, "spec revision 1.4");
    assert_eq!(sum(&img[..16]), 0, "floating pointer checksum");
    assert_eq!(img[11], 0, "feature byte 1: a configuration table exists");
    let pap = u32_at(img, 4) as u64;
    assert!(pap >= MPTABLE_BASE);
    let h = &img[(pap - MPTABLE_BASE) as usize..];
    assert_eq!(&h[..4], b"PCMP");
    let len = u16_at(h, 4) as usize;
    assert_eq!(sum(&h[..len]), 0, "base table checksum");
    assert_eq!(h[6], 4);
    assert_eq!(&h[8..16], b"BHyVe   ");
    assert_eq!(&h[16..28], b"Hypervisor  ");
    assert_eq!((u32_at(h, 28), u16_at(h, 32)), (0, 0), "no OEM table");
    assert_eq!(u32_at(h, 36), LAPIC_ADDR);
    let ext_len = u16_at(h, 40) as usize;
    assert_eq!(ext_len, 0);
    assert_eq!(h[42], sum(&h[len..len + ext_len]).wrapping_neg());
    let count = u16_at(h, 34) as usize;
    let mut out = Vec::new();
    let mut at = 44;
    let mut last_type = 0;
    for _ in 0..count {
        let e = &h[at..];
        assert!(e[0] >= last_type, "entries sorted by type");
        last_type = e[0];
        let (entry, n) = match e[0] {
            ENTRY_PROCESSOR => (
                Entry::Cpu {
                    apic_id: e[1],
                    version: e[2],
                    flags: e[3],
                    signature: u32_at(e, 4),
                    features: u32_at(e, 8),
                },
                20,
            ),
            ENTRY_BUS => (Entry::Bus(e[1], e[2..8].try_into().unwrap()), 8),
            ENTRY_IOAPIC => (
                Entry::Ioapic {
                    id: e[1],
                    version: e[2],
                    flags: e[3],
                    addr: u32_at(e, 4),
                },
                8,
            ),
            ENTRY_IO_INT | ENTRY_LOCAL_INT => (
                Entry::Int {
                    local: e[0] == ENTRY_LOCAL_INT,
                    int_type: e[1],
                    flags: u16_at(e, 2),
                    bus: e[4],
                    irq: e[5],
                    dst: e[6],
                    pin: e[7],
                },
                8,
            ),
            t => panic!("unknown entry type {t}"),
        };
        out.push(entry);
        at += n;
    }
    assert_eq!(at, len, "entries fill the base table exactly");
    assert_eq!(img.len(), (pap - MPTABLE_BASE) as usize + len);
    out
}

fn ioint(int_type: u8, flags: u16, bus: u8, irq: u8, pin: u8) -> Entry {
    Entry::Int {
        local: false,
        int_type,
        flags,
        bus,
        irq,
        dst: IOAPIC_ID,
        pin,
    }
}

#[test]
fn one_cpu_decodes_to_bhyves_layout() {
    let img = build(&MpTableSpec::new(1)).unwrap();
    assert_eq!(
        u32_at(&img, 4),
        0xf_0010,
        "config table right after the pointer"
    );
    let e = decode(&img);
    // 1 CPU + 2 buses + 1 I/O APIC + 16 ISA pins + 2 local.
    assert_eq!(e.len(), 22);
    assert_eq!(
        e[0],
        Entry::Cpu {
            apic_id: 0,
            version: 0x14,
            flags: 3,
            signature: 0x6a5,
            features: 0xbfeb_fbff
        }
    );
    assert_eq!(e[1], Entry::Bus(0, *b"PCI   "));
    assert_eq!(e[2], Entry::Bus(1, *b"ISA   "));
    assert_eq!(
        e[3],
        Entry::Ioapic {
            id: 0,
            version: 0x11,
            flags: 1,
            addr: 0xfec0_0000
        }
    );
    let ints = &e[4..20];
    assert_eq!(ints[0], ioint(INT_EXTINT, 0, 1, 0, 0));
    assert_eq!(ints[1], ioint(INT_INT, 0, 1, 1, 1));
    assert_eq!(ints[2], ioint(INT_INT, 0, 1, 0, 2), "PIT (IRQ 0) → pin 2");
    assert_eq!(ints[9], ioint(INT_INT, 0xf, 1, 9, 9), "SCI level/low");
    for pin in (1..16u8).filter(|p| ![2, 9].contains(p)) {
        assert_eq!(ints[pin as usize], ioint(INT_INT, 0, 1, pin, pin), "{pin}");
    }
    let lint = |int_type, pin| Entry::Int {
        local: true,
        int_type,
        flags: 0,
        bus: 0,
        irq: 0,
        dst: 0xff,
        pin,
    };
    assert_eq!(e[20], lint(INT_EXTINT, 0));
    assert_eq!(e[21], lint(INT_NMI, 1));
}

#[test]
fn sixteen_cpus_one_bsp() {
    let spec = MpTableSpec {
        cpus: 16,
        cpu: CpuIdentity {
            signature: 0x0005_0657,
            features: 0x1234_5678,
        },
        pci_intx: Vec::new(),
    };
    let img = build(&spec).unwrap();
    assert_eq!(img.len(), 16 + 44 + 16 * 20 + 21 * 8);
    let e = decode(&img);
    assert_eq!(e.len(), 16 + 21);
    for (i, c) in e[..16].iter().enumerate() {
        assert_eq!(
            *c,
            Entry::Cpu {
                apic_id: i as u8,
                version: 0x14,
                flags: if i == 0 { 3 } else { 1 },
                signature: 0x657,
                features: 0x1234_5678
            }
        );
    }
    assert!(matches!(e[16], Entry::Bus(0, _)));
}

#[test]
fn cpu_count_bounds() {
    assert_eq!(build(&MpTableSpec::new(0)), Err(MpTableError::CpuCount(0)));
    assert_eq!(
        build(&MpTableSpec::new(256)),
        Err(MpTableError::CpuCount(256))
    );
    let img = build(&MpTableSpec::new(MAX_CPUS)).unwrap();
    assert!((img.len() as u64) <= MPTABLE_LIMIT - MPTABLE_BASE);
    let e = decode(&img);
    assert_eq!(e.len(), MAX_CPUS + 21);
}

#[test]
fn pci_intx_entries_follow_the_isa_pins() {
    let mut spec = MpTableSpec::new(2);
    spec.pci_intx = vec![
        PciIntx {
            slot: 3,
            pin: 1,
            ioapic_pin: 16,
        },
        PciIntx {
            slot: 31,
            pin: 4,
            ioapic_pin: 23,
        },
    ];
    let e = decode(&build(&spec).unwrap());
    assert_eq!(e.len(), 2 + 3 + 16 + 2 + 2);
    assert_eq!(e[21], ioint(INT_INT, 0, 0, 3 << 2, 16));
    assert_eq!(e[22], ioint(INT_INT, 0, 0, (31 << 2) | 3, 23));
    for bad in [(32, 1, 16), (0, 0, 16), (0, 5, 16), (0, 1, 24)] {
        spec.pci_intx = vec![PciIntx {
            slot: bad.0,
            pin: bad.1,
            ioapic_pin: bad.2,
        }];
        assert!(
            matches!(build(&spec), Err(MpTableError::BadIntx { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn written_into_guest_memory() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    write(&mem, &MpTableSpec::new(3)).unwrap();
    let mut img = vec![0u8; 16 + 44 + 3 * 20 + 21 * 8];
    mem.read_slice(&mut img, GuestAddress(MPTABLE_BASE))
        .unwrap();
    let cpus = decode(&img)
        .iter()
        .filter(|e| matches!(e, Entry::Cpu { .. }))
        .count();
    assert_eq!(cpus, 3);
    // The scan a guest does: 16-byte steps over the BIOS area.
    let mut bios = vec![0u8; (MPTABLE_LIMIT - MPTABLE_BASE) as usize];
    mem.read_slice(&mut bios, GuestAddress(MPTABLE_BASE))
        .unwrap();
    let found: Vec<usize> = (0..bios.len())
        .step_by(16)
        .filter(|&o| &bios[o..o + 4] == b"_MP_")
        .collect();
    assert_eq!(found, vec![0]);

    let small = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
    assert!(matches!(
        write(&small, &MpTableSpec::new(1)),
        Err(MpTableError::GuestMemory(_))
    ));
}
