//! The ACPI tables as fw_cfg files for a boot ROM (OVMF, SeaBIOS), in
//! QEMU's linker/loader form: "etc/acpi/rsdp" and "etc/acpi/tables" hold
//! the tables laid out from offset 0, and "etc/table-loader" is a list of
//! 128-byte commands telling the firmware to allocate both files, add
//! each file's final address to every pointer field (which holds an
//! offset into "etc/acpi/tables"), and then compute every checksum
//! (QEMU's `hw/acpi/bios-linker-loader.c`; consumed by SeaBIOS's
//! `romfile_loader.c` and OVMF's `QemuFwCfgAcpi.c`).
//!
//! Checksum fields are left 0 in the files: OVMF computes the checksum
//! over the range including the field, so a stale value would corrupt it.

use super::sdt::{
    CHECKSUM_OFFSET, RSDP_CHECKSUM_OFFSET, RSDP_EXT_CHECKSUM_OFFSET, RSDP_LEN, RSDP_V1_LEN,
};
use super::{layout, AcpiError, AcpiSpec, FACS_ALIGN};

pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const LOADER_FILE: &str = "etc/table-loader";

/// One loader command.
pub const COMMAND_LEN: usize = 128;
/// fw_cfg file names are NUL-padded to this length.
pub const FILE_NAME_LEN: usize = 56;
pub const CMD_ALLOCATE: u32 = 1;
pub const CMD_ADD_POINTER: u32 = 2;
pub const CMD_ADD_CHECKSUM: u32 = 3;
/// Allocation zones: anywhere below 4 GiB, or the 0xe0000–0xfffff BIOS
/// segment (where a legacy OS scans for the RSDP).
pub const ZONE_HIGH: u8 = 1;
pub const ZONE_FSEG: u8 = 2;
/// The RSDP must sit on a 16-byte boundary; the tables file is aligned
/// as strictly as its strictest table (the FACS), so offsets within it
/// keep their alignment.
pub const RSDP_ALIGN: u32 = 16;
pub const TABLES_ALIGN: u32 = FACS_ALIGN as u32;

/// The three fw_cfg files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgAcpi {
    /// "etc/acpi/rsdp"
    pub rsdp: Vec<u8>,
    /// "etc/acpi/tables"
    pub tables: Vec<u8>,
    /// "etc/table-loader"
    pub loader: Vec<u8>,
}

fn command(cmd: u32) -> Vec<u8> {
    let mut c = vec![0u8; COMMAND_LEN];
    c[..4].copy_from_slice(&cmd.to_le_bytes());
    c
}

fn put_name(c: &mut [u8], at: usize, name: &str) {
    // Only this module's constant names reach here, all shorter than 56.
    debug_assert!(name.len() < FILE_NAME_LEN);
    c[at..at + name.len()].copy_from_slice(name.as_bytes());
}

fn allocate(file: &str, align: u32, zone: u8) -> Vec<u8> {
    let mut c = command(CMD_ALLOCATE);
    put_name(&mut c, 4, file);
    c[60..64].copy_from_slice(&align.to_le_bytes());
    c[64] = zone;
    c
}

fn add_pointer(dest: &str, src: &str, offset: u32, size: u8) -> Vec<u8> {
    let mut c = command(CMD_ADD_POINTER);
    put_name(&mut c, 4, dest);
    put_name(&mut c, 60, src);
    c[116..120].copy_from_slice(&offset.to_le_bytes());
    c[120] = size;
    c
}

fn add_checksum(file: &str, offset: u32, start: u32, len: u32) -> Vec<u8> {
    let mut c = command(CMD_ADD_CHECKSUM);
    put_name(&mut c, 4, file);
    c[60..64].copy_from_slice(&offset.to_le_bytes());
    c[64..68].copy_from_slice(&start.to_le_bytes());
    c[68..72].copy_from_slice(&len.to_le_bytes());
    c
}

/// The tables for `spec` as fw_cfg files (see the module comment).
pub fn fw_cfg_tables(spec: &AcpiSpec) -> Result<FwCfgAcpi, AcpiError> {
    // Laid out at 0: every address is an offset into its file.
    let (t, pointers) = layout(spec, 0, 0)?;
    let offset = |v: u64| u32::try_from(v).map_err(|_| AcpiError::TooBig(v as usize));
    let mut rsdp = Vec::new();
    let mut tables = Vec::new();
    let mut checksums = Vec::new();
    for x in &t.tables {
        if &x.signature == b"RSDP" {
            rsdp = x.bytes.clone();
            rsdp[RSDP_CHECKSUM_OFFSET] = 0;
            rsdp[RSDP_EXT_CHECKSUM_OFFSET] = 0;
            continue;
        }
        let at = x.gpa as usize;
        tables.resize(at, 0);
        tables.extend_from_slice(&x.bytes);
        // The FACS has no checksum.
        if &x.signature != b"FACS" {
            tables[at + CHECKSUM_OFFSET] = 0;
            let start = offset(x.gpa)?;
            let len = offset(x.bytes.len() as u64)?;
            checksums.push(add_checksum(
                TABLES_FILE,
                start + CHECKSUM_OFFSET as u32,
                start,
                len,
            ));
        }
    }
    let mut loader = [
        allocate(RSDP_FILE, RSDP_ALIGN, ZONE_FSEG),
        allocate(TABLES_FILE, TABLES_ALIGN, ZONE_HIGH),
    ]
    .concat();
    for p in &pointers {
        let (dest, base) = match &p.table {
            b"RSDP" => (RSDP_FILE, 0),
            sig => match t.get(sig) {
                Some(x) => (TABLES_FILE, x.gpa),
                None => continue,
            },
        };
        loader.extend(add_pointer(
            dest,
            TABLES_FILE,
            offset(base + p.offset as u64)?,
            p.size,
        ));
    }
    for c in checksums {
        loader.extend(c);
    }
    // The RSDP's 20-byte checksum first: the extended one covers it.
    loader.extend(add_checksum(
        RSDP_FILE,
        RSDP_CHECKSUM_OFFSET as u32,
        0,
        RSDP_V1_LEN as u32,
    ));
    loader.extend(add_checksum(
        RSDP_FILE,
        RSDP_EXT_CHECKSUM_OFFSET as u32,
        0,
        RSDP_LEN as u32,
    ));
    Ok(FwCfgAcpi {
        rsdp,
        tables,
        loader,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::pci_spec;
    use super::super::{build_at, AcpiSpec, ComPort};
    use super::*;

    fn name_at(c: &[u8], at: usize) -> String {
        let raw = &c[at..at + FILE_NAME_LEN];
        let end = raw.iter().position(|b| *b == 0).unwrap();
        assert!(raw[end..].iter().all(|b| *b == 0), "name not NUL-padded");
        String::from_utf8(raw[..end].to_vec()).unwrap()
    }
    fn u32_at(c: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(c[at..at + 4].try_into().unwrap())
    }

    /// How a boot ROM applies a checksum command: SeaBIOS subtracts the
    /// range's sum from the field; OVMF stores the byte that makes the
    /// range (field included) sum to 0.
    #[derive(Clone, Copy)]
    enum Rom {
        SeaBios,
        Ovmf,
    }

    /// What a boot ROM does with the files, with each file "allocated"
    /// at the address `place` picks.
    fn run_loader(
        f: &FwCfgAcpi,
        rom: Rom,
        place: impl Fn(&str, u32, u8) -> u64,
    ) -> (Vec<u8>, Vec<u8>, u64, u64) {
        let mut files = [
            (RSDP_FILE, f.rsdp.clone(), None::<u64>),
            (TABLES_FILE, f.tables.clone(), None),
        ];
        assert_eq!(f.loader.len() % COMMAND_LEN, 0);
        let idx = |n: &str| match n {
            RSDP_FILE => 0,
            TABLES_FILE => 1,
            _ => panic!("unknown file {n}"),
        };
        let mut seen_checksum = false;
        for c in f.loader.chunks(COMMAND_LEN) {
            match u32_at(c, 0) {
                CMD_ALLOCATE => {
                    let i = idx(&name_at(c, 4));
                    let (align, zone) = (u32_at(c, 60), c[64]);
                    let a = place(files[i].0, align, zone);
                    assert_eq!(a % u64::from(align), 0);
                    assert!(files[i].2.replace(a).is_none(), "allocated twice");
                }
                CMD_ADD_POINTER => {
                    assert!(!seen_checksum, "pointer patched after a checksum");
                    let d = idx(&name_at(c, 4));
                    let src = files[idx(&name_at(c, 60))].2.expect("source not allocated");
                    let (off, size) = (u32_at(c, 116) as usize, c[120] as usize);
                    assert!(files[d].2.is_some(), "destination not allocated");
                    let field = &mut files[d].1[off..off + size];
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(field);
                    let target = u64::from_le_bytes(v) + src;
                    field.copy_from_slice(&target.to_le_bytes()[..size]);
                }
                CMD_ADD_CHECKSUM => {
                    seen_checksum = true;
                    let i = idx(&name_at(c, 4));
                    let (off, start, len) = (
                        u32_at(c, 60) as usize,
                        u32_at(c, 64) as usize,
                        u32_at(c, 68) as usize,
                    );
                    let data = &mut files[i].1;
                    let sum = data[start..start + len]
                        .iter()
                        .fold(0u8, |s, b| s.wrapping_add(*b));
                    data[off] = match rom {
                        Rom::SeaBios => data[off].wrapping_sub(sum),
                        Rom::Ovmf => sum.wrapping_neg(),
                    };
                }
                other => panic!("unknown loader command {other}"),
            }
        }
        let [(_, rsdp, ra), (_, tables, ta)] = files;
        (rsdp, tables, ra.unwrap(), ta.unwrap())
    }

    fn specs() -> Vec<AcpiSpec> {
        let mut plain = AcpiSpec::new(2);
        plain.hpet = None;
        let mut with_com = pci_spec(4);
        with_com.com_ports = vec![ComPort {
            index: 0,
            base: 0x3f8,
            irq: 4,
        }];
        vec![plain, pci_spec(1), with_com]
    }

    #[test]
    fn the_loaded_tables_equal_the_tables_built_in_place() {
        for (spec, rom) in specs()
            .into_iter()
            .flat_map(|s| [(s.clone(), Rom::SeaBios), (s, Rom::Ovmf)])
        {
            let f = fw_cfg_tables(&spec).unwrap();
            let (rsdp_at, tables_at) = (0xf_5a10u64, 0x7ffc_0000u64);
            let (rsdp, tables, ra, ta) = run_loader(&f, rom, |name, _, zone| match name {
                RSDP_FILE => {
                    assert_eq!(zone, ZONE_FSEG);
                    rsdp_at
                }
                _ => {
                    assert_eq!(zone, ZONE_HIGH);
                    tables_at
                }
            });
            assert_eq!((ra, ta), (rsdp_at, tables_at));
            let want = build_at(&spec, rsdp_at, tables_at).unwrap();
            assert_eq!(rsdp, want.get(b"RSDP").unwrap().bytes);
            for x in &want.tables[1..] {
                let at = (x.gpa - tables_at) as usize;
                assert_eq!(
                    &tables[at..at + x.bytes.len()],
                    &x.bytes[..],
                    "{}",
                    String::from_utf8_lossy(&x.signature)
                );
            }
            assert_eq!(tables.len() as u64, want.end() - tables_at);
        }
    }

    #[test]
    fn commands_and_unpatched_files() {
        let spec = pci_spec(1);
        let f = fw_cfg_tables(&spec).unwrap();
        let cmds: Vec<&[u8]> = f.loader.chunks(COMMAND_LEN).collect();
        // Two allocations first: the RSDP in the BIOS segment, 16-byte
        // aligned; the tables anywhere, 64-byte aligned.
        assert_eq!(u32_at(cmds[0], 0), CMD_ALLOCATE);
        assert_eq!(name_at(cmds[0], 4), RSDP_FILE);
        assert_eq!((u32_at(cmds[0], 60), cmds[0][64]), (16, ZONE_FSEG));
        assert_eq!(name_at(cmds[1], 4), TABLES_FILE);
        assert_eq!((u32_at(cmds[1], 60), cmds[1][64]), (64, ZONE_HIGH));
        // RSDP: 2 pointers; RSDT and XSDT: one per listed table (FACP,
        // APIC, HPET, MCFG); FADT: 4.
        let ptrs = cmds.iter().filter(|c| u32_at(c, 0) == CMD_ADD_POINTER);
        assert_eq!(ptrs.count(), 2 + 2 * 4 + 4);
        // One checksum per table but the FACS, two for the RSDP; last.
        let sums: Vec<_> = cmds
            .iter()
            .filter(|c| u32_at(c, 0) == CMD_ADD_CHECKSUM)
            .collect();
        assert_eq!(sums.len(), 7 + 2);
        let tail = &cmds[cmds.len() - 2..];
        assert_eq!(name_at(tail[0], 4), RSDP_FILE);
        assert_eq!((u32_at(tail[0], 64), u32_at(tail[0], 68)), (0, 20));
        assert_eq!((u32_at(tail[1], 60), u32_at(tail[1], 68)), (32, 36));
        // Unpatched: pointers are offsets into the tables file, and
        // checksum fields are 0.
        assert_eq!(&f.rsdp[..8], b"RSD PTR ");
        assert_eq!((f.rsdp[8], f.rsdp[32]), (0, 0));
        let xsdt = u64::from_le_bytes(f.rsdp[24..32].try_into().unwrap()) as usize;
        assert_eq!(&f.tables[xsdt..xsdt + 4], b"XSDT");
        assert_eq!(f.tables[xsdt + 9], 0);
        let rsdt = u32_at(&f.rsdp, 16) as usize;
        assert_eq!((rsdt, &f.tables[..4]), (0, &b"RSDT"[..]));
        let facp = u32_at(&f.tables, rsdt + 36) as usize;
        assert_eq!(&f.tables[facp..facp + 4], b"FACP");
        let dsdt = u32_at(&f.tables, facp + 40) as usize;
        assert_eq!(&f.tables[dsdt..dsdt + 4], b"DSDT");
        let facs = u32_at(&f.tables, facp + 36) as usize;
        assert_eq!((&f.tables[facs..facs + 4], facs % 64), (&b"FACS"[..], 0));
    }

    #[test]
    fn bad_specs_are_errors() {
        assert_eq!(
            fw_cfg_tables(&AcpiSpec::new(0)),
            Err(AcpiError::CpuCount(0))
        );
    }
}
