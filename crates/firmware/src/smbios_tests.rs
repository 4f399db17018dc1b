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

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One structure read back the way an SMBIOS reader walks the table.
#[derive(Debug)]
struct Parsed {
    kind: u8,
    handle: u16,
    formatted: Vec<u8>,
    strings: Vec<String>,
    total_len: usize,
}

impl Parsed {
    /// The string a formatted-area byte refers to ("" for index 0).
    fn string(&self, at: usize) -> &str {
        match self.formatted[at] {
            0 => "",
            i => &self.strings[usize::from(i) - 1],
        }
    }
}

/// Walks `t` by each structure's length and string set; panics on any
/// malformation (length below the header, missing terminators, trailing
/// bytes after type 127).
fn parse(t: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut p = 0;
    loop {
        assert!(p + 4 <= t.len(), "truncated header at {p}");
        let len = usize::from(t[p + 1]);
        assert!(len >= 4 && p + len <= t.len(), "bad length at {p}");
        let mut q = p + len;
        let mut strings = Vec::new();
        if t[q] == 0 {
            assert_eq!(t[q + 1], 0, "empty string set needs two NULs");
            q += 2;
        } else {
            while t[q] != 0 {
                let end = q + t[q..].iter().position(|&b| b == 0).expect("NUL");
                strings.push(String::from_utf8(t[q..end].to_vec()).unwrap());
                q = end + 1;
            }
            q += 1;
        }
        out.push(Parsed {
            kind: t[p],
            handle: u16_at(t, p + 2),
            formatted: t[p..p + len].to_vec(),
            strings,
            total_len: q - p,
        });
        p = q;
        if out.last().unwrap().kind == TYPE_EOT {
            assert_eq!(p, t.len(), "bytes after the end-of-table structure");
            return out;
        }
    }
}

fn topo(sockets: u16, cores: u16, threads: u16) -> Topology {
    Topology {
        cpus: sockets * cores * threads,
        sockets,
        cores,
        threads,
    }
}

fn spec_for(cfg: &Config, mem: u64, t: Topology) -> SmbiosSpec {
    SmbiosSpec::from_config_with_host(cfg, &MemLayout::new(mem).unwrap(), &t, b"host").unwrap()
}

fn default_spec() -> SmbiosSpec {
    let mut cfg = Config::new();
    cfg.set("name", "vm1").unwrap();
    spec_for(&cfg, 256 << 20, topo(1, 1, 1))
}

fn of_type(p: &[Parsed], kind: u8) -> Vec<&Parsed> {
    p.iter().filter(|s| s.kind == kind).collect()
}

#[test]
fn structure_set_handles_and_entry_point() {
    let s = build(&default_spec()).unwrap();
    let p = parse(&s.tables);
    let kinds: Vec<u8> = p.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [0, 1, 2, 3, 4, 16, 17, 19, 32, 127]);
    let handles: Vec<u16> = p.iter().map(|s| s.handle).collect();
    assert_eq!(handles, (1..=10).collect::<Vec<u16>>());
    let lens: Vec<u8> = p.iter().map(|s| s.formatted[1]).collect();
    assert_eq!(
        lens,
        [0x18, 0x1b, 0x0f, 0x16, 0x2a, 0x17, 0x28, 0x1f, 0x0b, 0x04]
    );

    let e = &s.entry_point;
    assert_eq!(e.len(), ENTRY_POINT_LEN);
    assert_eq!(&e[0..4], b"_SM_");
    assert_eq!(&e[0x10..0x15], b"_DMI_");
    assert_eq!(sum(e), 0);
    assert_eq!(sum(&e[0x10..]), 0);
    assert_ne!(e[0x15], 0, "intermediate checksum is filled in");
    assert_eq!((e[5], e[6], e[7], e[0x1e]), (0x1f, 2, 6, 0x26));
    assert_eq!(usize::from(u16_at(e, 0x16)), s.tables.len());
    assert_eq!(u32_at(e, 0x18), 0xf101f);
    assert_eq!(usize::from(u16_at(e, 0x1c)), p.len());
    let max = p.iter().map(|s| s.total_len).max().unwrap();
    assert_eq!(usize::from(u16_at(e, 0x08)), max);
}

#[test]
fn default_strings_are_bhyves() {
    let p = parse(&build(&default_spec()).unwrap().tables);
    let t0 = &p[0];
    assert_eq!(
        [t0.string(4), t0.string(5), t0.string(8)],
        ["BHYVE", "14.0", "10/17/2021"]
    );
    assert_eq!(u16_at(&t0.formatted, 6), 0xf000);
    assert_eq!(u64_at(&t0.formatted, 0x0a), 0x8_9090);
    assert_eq!((t0.formatted[0x12], t0.formatted[0x13]), (0x01, 0x11));
    let t1 = &p[1];
    let got: Vec<&str> = [4, 5, 6, 7, 0x19, 0x1a]
        .iter()
        .map(|&a| t1.string(a))
        .collect();
    assert_eq!(
        got,
        ["FreeBSD", "BHYVE", "1.0", "None", "None", "Virtual Machine"]
    );
    assert_eq!(t1.formatted[0x18], 0x06);
    let t2 = &p[2];
    let got: Vec<&str> = [4, 5, 6, 7, 8, 0x0a]
        .iter()
        .map(|&a| t2.string(a))
        .collect();
    assert_eq!(got, ["FreeBSD", "BHYVE", "1.0", "None", "None", "None"]);
    assert_eq!((t2.formatted[9], t2.formatted[0x0d]), (0x01, 0x0a));
    let t3 = &p[3];
    let got: Vec<&str> = [4, 6, 7, 8, 0x15].iter().map(|&a| t3.string(a)).collect();
    assert_eq!(got, ["FreeBSD", "1.0", "None", "None", "None"]);
    assert_eq!(
        (t3.formatted[5], &t3.formatted[9..0x0d]),
        (2, &[3u8, 3, 3, 3][..])
    );
    // The baseboard names the chassis that follows it.
    assert_eq!(u16_at(&t2.formatted, 0x0b), t3.handle);
    // Type 32 and 127 have no strings.
    assert!(p[8].strings.is_empty() && p[9].strings.is_empty());
}

#[test]
fn config_overrides_every_string() {
    let mut cfg = Config::new();
    cfg.set("name", "web").unwrap();
    let vars = [
        ("bios.vendor", 0, 0x04),
        ("bios.version", 0, 0x05),
        ("bios.release_date", 0, 0x08),
        ("system.manufacturer", 1, 0x04),
        ("system.product_name", 1, 0x05),
        ("system.version", 1, 0x06),
        ("system.serial_number", 1, 0x07),
        ("system.sku", 1, 0x19),
        ("system.family_name", 1, 0x1a),
        ("board.manufacturer", 2, 0x04),
        ("board.product_name", 2, 0x05),
        ("board.version", 2, 0x06),
        ("board.serial_number", 2, 0x07),
        ("board.asset_tag", 2, 0x08),
        ("board.location", 2, 0x0a),
        ("chassis.manufacturer", 3, 0x04),
        ("chassis.version", 3, 0x06),
        ("chassis.serial_number", 3, 0x07),
        ("chassis.asset_tag", 3, 0x08),
        ("chassis.sku", 3, 0x15),
    ];
    for (name, _, _) in vars {
        // %(name) references expand, as with every bhyve variable.
        cfg.set(name, &format!("{name}=%(name)")).unwrap();
    }
    let p = parse(
        &build(&spec_for(&cfg, 256 << 20, topo(1, 1, 1)))
            .unwrap()
            .tables,
    );
    for (name, idx, at) in vars {
        assert_eq!(p[idx].string(at), format!("{name}=web"), "{name}");
    }
}

#[test]
fn empty_string_is_no_string_and_nul_is_refused() {
    let mut cfg = Config::new();
    cfg.set("system.version", "").unwrap();
    let p = parse(
        &build(&spec_for(&cfg, 256 << 20, topo(1, 1, 1)))
            .unwrap()
            .tables,
    );
    assert_eq!(p[1].formatted[6], 0);
    assert_eq!(p[1].string(7), "None");
    assert_eq!(p[1].strings.len(), 5);

    cfg.set("board.location", "a\0b").unwrap();
    let e = SmbiosSpec::from_config_with_host(
        &cfg,
        &MemLayout::new(256 << 20).unwrap(),
        &topo(1, 1, 1),
        b"h",
    )
    .unwrap_err();
    assert_eq!(e, SmbiosError::BadString("board.location"));
    // build() checks specs made by hand too.
    let mut spec = default_spec();
    spec.chassis.sku = "x\0".into();
    assert_eq!(build(&spec), Err(SmbiosError::BadString("chassis.sku")));
}

#[test]
fn uuid_is_stored_in_smbios_byte_order() {
    let text = "01234567-89ab-cdef-0123-456789abcdef";
    let want = [
        0x67, 0x45, 0x23, 0x01, 0xab, 0x89, 0xef, 0xcd, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ];
    assert_eq!(parse_uuid(text).unwrap(), want);
    assert_eq!(parse_uuid(&text.to_uppercase()).unwrap(), want);
    assert_eq!(format_uuid(&want), text);
    let mut cfg = Config::new();
    cfg.set("uuid", text).unwrap();
    let p = parse(
        &build(&spec_for(&cfg, 256 << 20, topo(1, 1, 1)))
            .unwrap()
            .tables,
    );
    assert_eq!(&p[1].formatted[8..24], &want);
    // An empty -U is FreeBSD's nil UUID.
    assert_eq!(parse_uuid("").unwrap(), [0; 16]);
}

#[test]
fn bad_uuid_text_is_one_clear_error() {
    for bad in [
        "xyz",
        "01234567-89ab-cdef-0123-456789abcde",
        "01234567-89ab-cdef-0123-456789abcdef0",
        "01234567089ab-cdef-0123-456789abcdef",
        "0123456g-89ab-cdef-0123-456789abcdef",
        "01234567-89ab-cdef-e123-456789abcdef",
        "+1234567-89ab-cdef-0123-456789abcdef",
    ] {
        assert_eq!(
            parse_uuid(bad),
            Err(SmbiosError::BadUuid(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        SmbiosError::BadUuid("xyz".into()).to_string(),
        "invalid UUID 'xyz'"
    );
    let mut cfg = Config::new();
    cfg.set("uuid", "nope").unwrap();
    let r = SmbiosSpec::from_config(&cfg, &MemLayout::new(256 << 20).unwrap(), &topo(1, 1, 1));
    assert_eq!(r, Err(SmbiosError::BadUuid("nope".into())));
}

#[test]
fn default_uuid_is_bhyves_md5_of_name_and_host() {
    // MD5("vm1" + "host" NUL-padded to 256 bytes) with version 3 and the
    // RFC 4122 variant forced into bytes 6 and 8.
    assert_eq!(
        default_uuid(b"vm1", b"host"),
        [
            0x96, 0xc1, 0xba, 0x44, 0xcb, 0x36, 0x3b, 0x41, 0x99, 0x40, 0x77, 0x49, 0xc4, 0x34,
            0x97, 0x71
        ]
    );
    assert_eq!(default_uuid(b"vm1", b"host"), default_uuid(b"vm1", b"host"));
    assert_ne!(default_uuid(b"vm1", b"host"), default_uuid(b"vm2", b"host"));
    assert_ne!(
        default_uuid(b"vm1", b"host"),
        default_uuid(b"vm1", b"other")
    );
    let u = default_uuid(b"x", b"y");
    assert_eq!((u[6] & 0xf0, u[8] & 0xc0), (0x30, 0x80));
    // It is what an unset uuid gives, and it lands in type 1.
    let s = default_spec();
    assert_eq!(s.uuid, default_uuid(b"vm1", b"host"));
    let p = parse(&build(&s).unwrap().tables);
    assert_eq!(&p[1].formatted[8..24], &s.uuid);
}

#[test]
fn host_name_is_readable() {
    let h = host_name().unwrap();
    assert!(!h.is_empty() && !h.contains(&b'\n'));
}

#[test]
fn one_processor_per_socket() {
    let cfg = Config::new();
    let p = parse(
        &build(&spec_for(&cfg, 256 << 20, topo(2, 2, 2)))
            .unwrap()
            .tables,
    );
    let cpus = of_type(&p, TYPE_PROCESSOR);
    assert_eq!(cpus.len(), 2);
    for (i, c) in cpus.iter().enumerate() {
        assert_eq!(c.string(4), format!("CPU #{i}"));
        let f = &c.formatted;
        assert_eq!((f[5], f[6], f[0x18], f[0x19]), (3, 1, 0x41, 6));
        assert_eq!((f[0x23], f[0x25]), (2, 4), "cores, threads per socket");
        assert_eq!(u16_at(f, 0x1a), 0xffff);
        assert_eq!((u16_at(f, 0x26), u16_at(f, 0x28)), (4, 1));
    }
    // Counts above 254 are "unknown".
    let mut s = default_spec();
    (s.cores, s.threads) = (255, 1);
    let p = parse(&build(&s).unwrap().tables);
    let f = &of_type(&p, TYPE_PROCESSOR)[0].formatted;
    assert_eq!((f[0x23], f[0x25]), (0, 0));
    (s.cores, s.threads) = (127, 2);
    let p = parse(&build(&s).unwrap().tables);
    let f = &of_type(&p, TYPE_PROCESSOR)[0].formatted;
    assert_eq!((f[0x23], f[0x25]), (127, 254));
}

#[test]
fn memory_structures_describe_ram() {
    let cfg = Config::new();
    let p = parse(
        &build(&spec_for(&cfg, 8 << 30, topo(1, 1, 1)))
            .unwrap()
            .tables,
    );
    let array = of_type(&p, TYPE_MEMARRAY)[0];
    let f = &array.formatted;
    assert_eq!((f[4], f[5], f[6]), (3, 3, 3));
    assert_eq!(u32_at(f, 7), 0x8000_0000);
    assert_eq!(u16_at(f, 0x0d), 2);
    assert_eq!(u64_at(f, 0x0f), 8 << 30);
    let dev = &of_type(&p, TYPE_MEMDEVICE)[0].formatted;
    assert_eq!(u16_at(dev, 4), array.handle);
    assert_eq!(u16_at(dev, 0x0c), 8192, "MiB units");
    let maps = of_type(&p, TYPE_MEMARRAYMAP);
    assert_eq!(maps.len(), 2);
    let ranges: Vec<(u64, u64)> = maps
        .iter()
        .map(|m| {
            assert_eq!(u16_at(&m.formatted, 0x0c), array.handle);
            assert_eq!(u32_at(&m.formatted, 4), 0xffff_ffff);
            (u64_at(&m.formatted, 0x0f), u64_at(&m.formatted, 0x17))
        })
        .collect();
    assert_eq!(ranges, [(0, (3 << 30) - 1), (4 << 30, (9 << 30) - 1)]);

    let p = parse(
        &build(&spec_for(&cfg, 256 << 20, topo(1, 1, 1)))
            .unwrap()
            .tables,
    );
    assert_eq!(u16_at(&of_type(&p, TYPE_MEMARRAY)[0].formatted, 0x0d), 1);
    assert_eq!(of_type(&p, TYPE_MEMARRAYMAP).len(), 1);

    // KiB below 32 MiB, the extended field from 32767 MiB.
    let mut s = default_spec();
    (s.lowmem, s.highmem) = (16 << 20, 0);
    let p = parse(&build(&s).unwrap().tables);
    assert_eq!(
        u16_at(&of_type(&p, TYPE_MEMDEVICE)[0].formatted, 0x0c),
        0x8000 | 16384
    );
    (s.lowmem, s.highmem) = (3 << 30, 61 << 30);
    let p = parse(&build(&s).unwrap().tables);
    let dev = &of_type(&p, TYPE_MEMDEVICE)[0].formatted;
    assert_eq!((u16_at(dev, 0x0c), u32_at(dev, 0x1c)), (0x7fff, 65536));
}

#[test]
fn written_at_smbios_base_and_found_by_a_scan() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let spec = default_spec();
    write(&mem, &spec).unwrap();
    let mut area = vec![0u8; (SMBIOS_LIMIT - 0xf_0000) as usize];
    mem.read_slice(&mut area, GuestAddress(0xf_0000)).unwrap();
    // What a guest does: look for the anchor on 16-byte boundaries.
    let at = (0..area.len())
        .step_by(16)
        .find(|&o| &area[o..o + 4] == b"_SM_" && sum(&area[o..o + 0x1f]) == 0)
        .unwrap();
    assert_eq!(0xf_0000 + at as u64, SMBIOS_BASE);
    let e = &area[at..at + 0x1f];
    let start = (u64::from(u32_at(e, 0x18)) - 0xf_0000) as usize;
    let len = usize::from(u16_at(e, 0x16));
    assert!(0xf_0000 + (start + len) as u64 <= SMBIOS_LIMIT);
    let p = parse(&area[start..start + len]);
    assert_eq!(p.len(), usize::from(u16_at(e, 0x1c)));
    assert_eq!(&p[1].formatted[8..24], &spec.uuid);
}

#[test]
fn largest_topology_fits() {
    let cfg = Config::new();
    let s = build(&spec_for(&cfg, 8 << 30, topo(16, 1, 1))).unwrap();
    assert!(ENTRY_POINT_LEN + s.tables.len() <= SMBIOS_MAX_LENGTH);
    assert_eq!(of_type(&parse(&s.tables), TYPE_PROCESSOR).len(), 16);
}

#[test]
fn oversized_input_is_an_error_not_a_panic() {
    let mut s = default_spec();
    s.system.serial_number = "x".repeat(SMBIOS_MAX_LENGTH);
    assert!(matches!(build(&s), Err(SmbiosError::TooBig(_))));
    let mut s = default_spec();
    s.sockets = u16::MAX;
    assert!(matches!(build(&s), Err(SmbiosError::TooBig(_))));
    s.sockets = 0;
    assert!(matches!(build(&s), Err(SmbiosError::BadTopology { .. })));
}

#[test]
fn fw_cfg_files_match_seabios_expectations() {
    let spec = default_spec();
    let (anchor, tables) = fw_cfg_files(&spec).unwrap();
    assert_eq!(anchor.len(), ENTRY_POINT_LEN);
    assert_eq!(sum(&anchor), 0);
    assert_eq!(sum(&anchor[0x10..]), 0);
    assert_eq!(u32_at(&anchor, 0x18), 0, "firmware places the tables");
    assert_eq!(usize::from(u16_at(&anchor, 0x16)), tables.len());
    assert_eq!(tables, build(&spec).unwrap().tables);
    assert_eq!(parse(&tables)[0].kind, TYPE_BIOS);
}

/// dmidecode's `--dump-bin` format: the entry point at 0 with the table
/// address rewritten to 0x20, the table at 0x20.
#[test]
fn dmidecode_reads_the_tables() {
    let Ok(out) = std::process::Command::new("dmidecode")
        .arg("--version")
        .output()
    else {
        eprintln!("note: dmidecode not installed; skipping the dmidecode check");
        return;
    };
    assert!(out.status.success());
    let mut cfg = Config::new();
    cfg.set("uuid", "01234567-89ab-cdef-0123-456789abcdef")
        .unwrap();
    cfg.set("system.manufacturer", "Acme Corp").unwrap();
    cfg.set("board.product_name", "Board 9").unwrap();
    cfg.set("chassis.asset_tag", "").unwrap();
    let s = build_at(&spec_for(&cfg, 8 << 30, topo(2, 2, 1)), 0x20).unwrap();
    let mut dump = s.entry_point.clone();
    dump.resize(0x20, 0);
    dump.extend_from_slice(&s.tables);
    let path = std::env::temp_dir().join(format!("bhyve-smbios-{}.bin", std::process::id()));
    std::fs::write(&path, &dump).unwrap();
    let out = std::process::Command::new("dmidecode")
        .arg("--from-dump")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for want in [
        "SMBIOS 2.6 present.",
        "12 structures occupying",
        "Vendor: BHYVE",
        "Release Date: 10/17/2021",
        "Manufacturer: Acme Corp",
        "UUID: 01234567-89ab-cdef-0123-456789abcdef",
        "Family: Virtual Machine",
        "Product Name: Board 9",
        "Chassis Handle: 0x0004",
        "Asset Tag: Not Specified",
        "Socket Designation: CPU #1",
        "Core Count: 2",
        "Maximum Capacity: 8 GB",
        "Size: 8 GB",
        "Starting Address: 0x0000000100000000",
        "Ending Address: 0x000000023FFFFFFF",
        "Range Size: 5 GB",
        "Range Size: 3 GB",
        "Status: No errors detected",
        "End Of Table",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    for bad in [
        "BAD INDEX",
        "Wrong DMI",
        "Invalid entry",
        "Out Of Spec",
        "Unknown Type",
    ] {
        assert!(!text.contains(bad), "{bad:?} in:\n{text}");
    }
    assert!(!err.contains("checksum"), "{err}");
}
