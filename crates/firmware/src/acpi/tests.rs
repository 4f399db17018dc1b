use super::fadt::{flags, off as f};
use super::madt::{
    INTI_ACTIVE_HIGH, INTI_ACTIVE_LOW, INTI_EDGE, INTI_LEVEL, TYPE_INT_OVERRIDE, TYPE_IO_APIC,
    TYPE_LOCAL_APIC, TYPE_LOCAL_APIC_NMI,
};
use super::*;
use crate::mptable::{self, MpTableSpec, PciIntx};
use vm_memory::GuestMemoryMmap;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
}

fn all_coms() -> Vec<ComPort> {
    [(0x3f8, 4), (0x2f8, 3), (0x3e8, 4), (0x2e8, 3)]
        .iter()
        .enumerate()
        .map(|(i, (base, irq))| ComPort {
            index: i as u8,
            base: *base,
            irq: *irq,
        })
        .collect()
}

fn spec(cpus: usize) -> AcpiSpec {
    AcpiSpec {
        com_ports: all_coms(),
        ..AcpiSpec::new(cpus)
    }
}

/// The table at `gpa`, found by address as a guest would.
fn at(t: &AcpiTables, gpa: u64) -> &Table {
    t.tables
        .iter()
        .find(|x| x.gpa == gpa)
        .unwrap_or_else(|| panic!("no table at {gpa:#x}"))
}

#[test]
fn every_table_has_a_valid_header_and_checksum() {
    for cpus in [1, 16, MAX_CPUS] {
        let t = build(&spec(cpus)).unwrap();
        for x in &t.tables {
            let b = &x.bytes;
            match &x.signature {
                b"RSDP" => {
                    assert_eq!(&b[..8], b"RSD PTR ");
                    assert_eq!(sum(&b[..20]), 0, "RSDP checksum");
                    assert_eq!(sum(b), 0, "RSDP extended checksum");
                    assert_eq!(b[15], 2, "RSDP revision");
                    assert_eq!(u32_at(b, 20) as usize, b.len());
                }
                b"FACS" => {
                    assert_eq!(&b[..4], b"FACS");
                    assert_eq!(u32_at(b, 4) as usize, b.len());
                    assert_eq!(b.len(), 64);
                    assert_eq!(b[32], 2, "FACS version");
                }
                sig => {
                    assert_eq!(&b[..4], sig);
                    assert_eq!(u32_at(b, 4) as usize, b.len(), "{:?}", x.signature);
                    assert_eq!(sum(b), 0, "{:?} checksum", x.signature);
                    assert_eq!(&b[10..16], b"BHYVE ");
                    assert_eq!(&b[16..18], b"BV");
                    assert_eq!(&b[18..22], sig);
                }
            }
        }
    }
}

#[test]
fn rsdp_leads_to_every_table() {
    let t = build(&spec(4)).unwrap();
    let rsdp = &t.tables[0];
    assert_eq!((&rsdp.signature, rsdp.gpa), (b"RSDP", ACPI_BASE));
    let rsdt = at(&t, u64::from(u32_at(&rsdp.bytes, 16)));
    let xsdt = at(&t, u64_at(&rsdp.bytes, 24));
    assert_eq!((&rsdt.signature, &xsdt.signature), (b"RSDT", b"XSDT"));
    let r: Vec<u64> = rsdt.bytes[36..]
        .chunks(4)
        .map(|c| u64::from(u32_at(c, 0)))
        .collect();
    let x: Vec<u64> = xsdt.bytes[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
    assert_eq!(r, x, "RSDT and XSDT list the same tables");
    let sigs: Vec<&[u8; 4]> = x.iter().map(|a| &at(&t, *a).signature).collect();
    assert_eq!(sigs, [b"FACP", b"APIC", b"HPET", b"SPCR"], "FADT first");
}

#[test]
fn fadt_fields_are_bhyves() {
    let t = build(&spec(2)).unwrap();
    let b = &t.get(b"FACP").unwrap().bytes;
    assert_eq!(b.len(), 276);
    assert_eq!((b[8], b[f::MINOR_REVISION]), (5, 1), "revision 5.1");
    let facs = t.get(b"FACS").unwrap().gpa;
    let dsdt = t.get(b"DSDT").unwrap().gpa;
    assert_eq!(u64::from(u32_at(b, f::FIRMWARE_CTRL)), facs);
    assert_eq!(u64::from(u32_at(b, f::DSDT)), dsdt);
    assert_eq!(u64_at(b, f::X_FIRMWARE_CTRL), facs);
    assert_eq!(u64_at(b, f::X_DSDT), dsdt);
    assert_eq!(&at(&t, facs).signature, b"FACS");
    assert_eq!(facs % 64, 0, "FACS is 64-byte aligned");
    assert_eq!(u16_at(b, f::SCI_INT), 9);
    assert_eq!(u32_at(b, f::SMI_CMD), 0xb2);
    assert_eq!((b[f::ACPI_ENABLE], b[f::ACPI_DISABLE]), (0xa0, 0xa1));
    assert_eq!(u32_at(b, f::PM1A_EVT_BLK), 0x400);
    assert_eq!(u32_at(b, f::PM1A_CNT_BLK), 0x404);
    assert_eq!(u32_at(b, f::PM_TMR_BLK), 0x408);
    assert_eq!(u32_at(b, f::GPE0_BLK), 0x40c);
    assert_eq!(
        (
            b[f::PM1_EVT_LEN],
            b[f::PM1_CNT_LEN],
            b[f::PM_TMR_LEN],
            b[f::GPE0_BLK_LEN]
        ),
        (4, 2, 4, 2)
    );
    assert_eq!(b[f::CENTURY], 0x32);
    assert_eq!(
        u16_at(b, f::IAPC_BOOT_ARCH),
        0x14,
        "no VGA, no ASPM, no 8042"
    );
    let fl = u32_at(b, f::FLAGS);
    assert_ne!(fl & flags::TMR_VAL_EXT, 0, "32-bit PM timer");
    assert_ne!(fl & flags::RESET_REG_SUP, 0);
    assert_eq!(fl & flags::PWR_BUTTON, 0, "fixed-feature power button");
    assert_eq!(fl, 0x0008_1525);
    // Reset register: system I/O, 8 bits, byte access, 0xcf9; value 6.
    assert_eq!(&b[f::RESET_REG..f::RESET_REG + 4], &[1, 8, 0, 1]);
    assert_eq!(u64_at(b, f::RESET_REG + 4), 0xcf9);
    assert_eq!(b[f::RESET_VALUE], 6);
    // Extended blocks agree with the 32-bit ones.
    for (gas, space_width_access, addr) in [
        (f::X_PM1A_EVT_BLK, [1, 32, 0, 2], 0x400),
        (f::X_PM1A_CNT_BLK, [1, 16, 0, 2], 0x404),
        (f::X_PM_TMR_BLK, [1, 32, 0, 3], 0x408),
        (f::X_GPE0_BLK, [1, 16, 0, 1], 0x40c),
    ] {
        assert_eq!(b[gas..gas + 4], space_width_access, "GAS at {gas}");
        assert_eq!(u64_at(b, gas + 4), addr);
    }

    // Without a GPE block both forms say so.
    let mut s = spec(1);
    s.pm.gpe0 = None;
    let t = build(&s).unwrap();
    let b = &t.get(b"FACP").unwrap().bytes;
    assert_eq!((u32_at(b, f::GPE0_BLK), b[f::GPE0_BLK_LEN]), (0, 0));
    assert!(b[f::X_GPE0_BLK..f::X_GPE0_BLK + 12].iter().all(|x| *x == 0));
}

/// MADT entries as (type, bytes), checking that they tile the table.
fn madt_entries(b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut v = Vec::new();
    let mut i = madt::MADT_FIXED_LEN;
    while i < b.len() {
        let len = usize::from(b[i + 1]);
        assert!(len >= 2 && i + len <= b.len(), "entry at {i}");
        v.push((b[i], &b[i..i + len]));
        i += len;
    }
    assert_eq!(i, b.len());
    v
}

#[test]
fn madt_describes_every_cpu_and_the_isa_wiring() {
    for cpus in [1, 16, MAX_CPUS] {
        let t = build(&spec(cpus)).unwrap();
        let b = &t.get(b"APIC").unwrap().bytes;
        assert_eq!(u32_at(b, 36), 0xfee0_0000);
        assert_eq!(u32_at(b, 40), 1, "PCAT_COMPAT");
        let e = madt_entries(b);
        let lapics: Vec<_> = e.iter().filter(|(k, _)| *k == TYPE_LOCAL_APIC).collect();
        assert_eq!(lapics.len(), cpus);
        for (i, (_, x)) in lapics.iter().enumerate() {
            assert_eq!(
                (x[1], x[2], x[3]),
                (8, i as u8, i as u8),
                "UID = APIC ID = index"
            );
            assert_eq!(u32_at(x, 4), 1, "enabled");
        }
        let ioapics: Vec<_> = e.iter().filter(|(k, _)| *k == TYPE_IO_APIC).collect();
        assert_eq!(ioapics.len(), 1);
        let io = ioapics[0].1;
        assert_eq!((io[2], u32_at(io, 4), u32_at(io, 8)), (0, 0xfec0_0000, 0));
        let isos: Vec<(u8, u8, u32, u16)> = e
            .iter()
            .filter(|(k, _)| *k == TYPE_INT_OVERRIDE)
            .map(|(_, x)| (x[2], x[3], u32_at(x, 4), u16_at(x, 8)))
            .collect();
        assert_eq!(
            isos,
            [
                (0, 0, 2, INTI_ACTIVE_HIGH | INTI_EDGE),
                (0, 9, 9, INTI_ACTIVE_LOW | INTI_LEVEL)
            ]
        );
        let nmis: Vec<_> = e
            .iter()
            .filter(|(k, _)| *k == TYPE_LOCAL_APIC_NMI)
            .collect();
        assert_eq!(nmis.len(), 1);
        let n = nmis[0].1;
        assert_eq!(
            (n[2], u16_at(n, 3), n[5]),
            (0xff, 0x5, 1),
            "LINT1, all CPUs"
        );
    }
}

#[test]
fn hpet_and_spcr() {
    let t = build(&spec(1)).unwrap();
    let h = &t.get(b"HPET").unwrap().bytes;
    assert_eq!(h.len(), 56);
    assert_eq!(u32_at(h, hpet::off::BLOCK_ID), 0x8086_0701);
    assert_eq!(h[hpet::off::ADDRESS], 0, "system memory");
    assert_eq!(u64_at(h, hpet::off::ADDRESS + 4), 0xfed0_0000);
    assert_eq!(h[hpet::off::FLAGS], 1, "4K page protection");

    let s = &t.get(b"SPCR").unwrap().bytes;
    assert_eq!(s.len(), 80);
    assert_eq!(s[spcr::off::ADDRESS], 1, "system I/O");
    assert_eq!(u64_at(s, spcr::off::ADDRESS + 4), 0x3f8);
    assert_eq!((s[spcr::off::INTERRUPT_TYPE], s[spcr::off::IRQ]), (1, 4));
    assert_eq!(s[spcr::off::BAUD], 7, "115200");
    assert_eq!(u16_at(s, spcr::off::PCI_DEVICE_ID), 0xffff);

    // No COM1: no SPCR; no HPET: no HPET table; the lists shrink.
    let mut sp = AcpiSpec::new(1);
    sp.com_ports = vec![all_coms()[1]];
    sp.hpet = None;
    let t = build(&sp).unwrap();
    assert!(t.get(b"SPCR").is_none() && t.get(b"HPET").is_none());
    assert_eq!(t.get(b"XSDT").unwrap().bytes.len(), 36 + 2 * 8);
    assert_eq!(t.get(b"RSDT").unwrap().bytes.len(), 36 + 2 * 4);
}

#[test]
fn dsdt_names_the_configured_devices() {
    let t = build(&spec(1)).unwrap();
    let d = &t.get(b"DSDT").unwrap().bytes;
    assert_eq!(d[8], 2, "DSDT revision 2");
    let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"\x08_S5_\x12\x05\x02\x0a\x05\x00"), "\\_S5 = {{5, 0}}");
    for name in [
        b"COM1", b"COM2", b"COM3", b"COM4", b"RTC_", b"HPET", b"SIO_",
    ] {
        assert!(has(name), "{}", String::from_utf8_lossy(name));
    }
    let mut s = AcpiSpec::new(1);
    s.com_ports = vec![all_coms()[1]];
    let t = build(&s).unwrap();
    let d = &t.get(b"DSDT").unwrap().bytes;
    let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"COM2") && !has(b"COM1"));

    // Devices appended by other parts of the VMM land in \_SB.
    let crs = aml::ResourceTemplate::new().io(0xcf8, 8).build().unwrap();
    let body = [
        aml::name("_HID", &aml::eisa_id("PNP0A03").unwrap()).unwrap(),
        aml::name("_CRS", &crs).unwrap(),
    ]
    .concat();
    s.sb_terms.push(aml::device("PC00", &body).unwrap());
    let before = build(&AcpiSpec::new(1)).unwrap();
    let t = build(&s).unwrap();
    let d = &t.get(b"DSDT").unwrap().bytes;
    assert!(d.windows(4).any(|w| w == b"PC00"));
    assert!(d.len() > before.get(b"DSDT").unwrap().bytes.len());
    assert_eq!(sum(d), 0);
}

#[test]
fn layout_fits_between_the_mp_table_and_1m() {
    // The largest MP table: every CPU and one INTx line per slot and pin.
    let mut mp = MpTableSpec::new(MAX_CPUS);
    for slot in 0..32 {
        for pin in 1..=4 {
            mp.pci_intx.push(PciIntx {
                slot,
                pin,
                ioapic_pin: 16 + (slot + pin) % 8,
            });
        }
    }
    let mp_len = mptable::build(&mp).unwrap().len() as u64;
    assert!(
        mp_len <= MPTABLE_ROOM,
        "MP table {mp_len:#x} reaches the RSDP"
    );

    for cpus in [1, 16, MAX_CPUS] {
        let t = build(&spec(cpus)).unwrap();
        assert_eq!(t.tables[0].gpa, ACPI_BASE);
        let mut prev_end = ACPI_BASE;
        for x in &t.tables {
            assert!(x.gpa >= prev_end, "{:?} overlaps", x.signature);
            assert_eq!(x.gpa % TABLE_ALIGN, 0);
            prev_end = x.gpa + x.bytes.len() as u64;
        }
        assert!(t.end() <= ACPI_LIMIT);
        assert_eq!(t.end(), prev_end);
    }
}

#[test]
fn bad_specs_are_errors() {
    assert_eq!(build(&AcpiSpec::new(0)), Err(AcpiError::CpuCount(0)));
    assert_eq!(build(&AcpiSpec::new(256)), Err(AcpiError::CpuCount(256)));
    let mut s = AcpiSpec::new(1);
    s.com_ports = vec![ComPort {
        index: 4,
        base: 0x3f8,
        irq: 4,
    }];
    assert!(matches!(build(&s), Err(AcpiError::BadCom { .. })));
    s.com_ports = vec![all_coms()[0], all_coms()[0]];
    assert!(matches!(build(&s), Err(AcpiError::BadCom { .. })));
    s.com_ports = vec![ComPort {
        index: 0,
        base: 0x3f8,
        irq: 16,
    }];
    assert!(matches!(build(&s), Err(AcpiError::BadCom { .. })));
    s.com_ports.clear();
    s.sci_irq = 20;
    assert_eq!(build(&s), Err(AcpiError::BadSci(20)));
}

/// The guest's view: scan the BIOS area for the RSDP on 16-byte
/// boundaries, as Linux and FreeBSD do, and follow it.
#[test]
fn a_guest_scanning_the_bios_area_finds_the_tables() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    mptable::write(&mem, &MpTableSpec::new(16)).unwrap();
    assert_eq!(write(&mem, &spec(16)).unwrap(), ACPI_BASE);
    let mut bios = vec![0u8; 0x20000];
    mem.read_slice(&mut bios, GuestAddress(0xe0000)).unwrap();
    let found: Vec<u64> = (0..bios.len())
        .step_by(16)
        .filter(|i| bios[*i..].starts_with(b"RSD PTR ") && sum(&bios[*i..*i + 20]) == 0)
        .map(|i| 0xe0000 + i as u64)
        .collect();
    assert_eq!(found, [ACPI_BASE]);
    let r = (ACPI_BASE - 0xe0000) as usize;
    let xsdt = u64_at(&bios, r + 24);
    let x = (xsdt - 0xe0000) as usize;
    assert_eq!(&bios[x..x + 4], b"XSDT");
    let len = u32_at(&bios, x + 4) as usize;
    assert_eq!(sum(&bios[x..x + len]), 0);
    let madt = (u64_at(&bios, x + 36 + 8) - 0xe0000) as usize;
    assert_eq!(&bios[madt..madt + 4], b"APIC");
    // The MP table is intact next to the tables.
    assert_eq!(&bios[0x10000..0x10004], b"_MP_");
}

#[test]
fn without_pci_the_dsdt_has_no_pci_objects() {
    let t = build(&spec(2)).unwrap();
    assert!(t.get(b"MCFG").is_none());
    let d = &t.get(b"DSDT").unwrap().bytes;
    let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
    for name in [&b"PC00"[..], b"PICM", b"_PIC", b"_PRT", b"LNKA", b"ISA_"] {
        assert!(!has(name), "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn pci_adds_an_mcfg_after_the_hpet() {
    let s = tests_support::pci_spec(4);
    let t = build(&s).unwrap();
    let order: Vec<[u8; 4]> = t.tables.iter().map(|x| x.signature).collect();
    assert_eq!(
        order,
        [
            *b"RSDP", *b"RSDT", *b"XSDT", *b"FACP", *b"APIC", *b"HPET", *b"MCFG", *b"FACS",
            *b"DSDT"
        ]
    );
    let mcfg = t.get(b"MCFG").unwrap();
    assert_eq!(sum(&mcfg.bytes), 0);
    assert_eq!(u64_at(&mcfg.bytes, 44), 0xe000_0000);
    let x = &t.get(b"XSDT").unwrap().bytes;
    let listed: Vec<u64> = (36..x.len()).step_by(8).map(|o| u64_at(x, o)).collect();
    let gpa = |s: &[u8; 4]| t.get(s).unwrap().gpa;
    assert_eq!(
        listed,
        [gpa(b"FACP"), gpa(b"APIC"), gpa(b"HPET"), gpa(b"MCFG")]
    );
    let r = &t.get(b"RSDT").unwrap().bytes;
    assert_eq!(u32_at(r, 36 + 12) as u64, gpa(b"MCFG"));
    // Without an HPET the MCFG follows the MADT.
    let mut s = s;
    s.hpet = None;
    let t = build(&s).unwrap();
    let x = &t.get(b"XSDT").unwrap().bytes;
    assert_eq!(u64_at(x, 36 + 16), t.get(b"MCFG").unwrap().gpa);
}

#[test]
fn the_largest_pci_platform_fits_below_1m() {
    let mut s = spec(MAX_CPUS);
    let mut pci = PciRootSpec {
        lpc_slot: Some(31),
        ..PciRootSpec::new()
    };
    for slot in 0..32 {
        for pin in 0..4 {
            pci.prt.push(PrtEntry {
                slot,
                pin,
                ioapic_pin: 16 + u32::from((slot + pin) % 8),
                pirq: (slot + pin) % 8,
            });
        }
    }
    s.pci = Some(pci);
    let t = build(&s).unwrap();
    assert!(t.end() <= ACPI_LIMIT);
    let d = &t.get(b"DSDT").unwrap().bytes;
    assert_eq!(u32_at(d, 4) as usize, d.len());
    assert_eq!(sum(d), 0);
}

#[test]
fn a_bad_pci_root_is_an_error() {
    let mut s = tests_support::pci_spec(1);
    if let Some(p) = s.pci.as_mut() {
        p.io_window = (0x2000, 0x1000);
    }
    assert!(matches!(build(&s), Err(AcpiError::BadPci(_))));
    assert!(matches!(fw_cfg_tables(&s), Err(AcpiError::BadPci(_))));
}

#[test]
fn build_at_places_the_same_tables_elsewhere() {
    let s = tests_support::pci_spec(2);
    let here = build(&s).unwrap();
    let there = build_at(&s, 0xf_0000, 0x7000_0000).unwrap();
    assert_eq!(there.tables[0].gpa, 0xf_0000);
    assert_eq!(there.tables[1].gpa, 0x7000_0000);
    for (a, b) in here.tables.iter().zip(&there.tables) {
        assert_eq!(a.signature, b.signature);
        assert_eq!(a.bytes.len(), b.bytes.len());
    }
    // The RSDT holds 32-bit pointers: no tables above 4 GiB.
    assert!(matches!(
        build_at(&s, 0xf_0000, 0xffff_ff00),
        Err(AcpiError::TooBig(_))
    ));
}
