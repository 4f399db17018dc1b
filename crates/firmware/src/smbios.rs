//! SMBIOS (System Management BIOS) tables, as bhyve's `smbiostbl.c` builds
//! them: what `dmidecode`, `/sys/class/dmi` and firmware menus show about
//! the "machine" — vendor strings, the system UUID (`-U`), CPU sockets and
//! memory size.
//!
//! Layout in guest memory: a 31-byte SMBIOS 2.6 entry point ("_SM_" with
//! the legacy "_DMI_" part) at [`SMBIOS_BASE`], the structure table right
//! after it, all below bhyve's ACPI tables at 0xf2400. Guests find the
//! entry point by scanning 0xf0000–0xfffff on 16-byte boundaries.
//!
//! Structures, in bhyve's order and with its fixed values: BIOS (type 0),
//! System (1, with the UUID), Baseboard (2), Chassis (3), one Processor (4)
//! per socket, Physical Memory Array (16), one Memory Device (17) for all
//! of RAM, one Memory Array Mapped Address (19) per RAM range (below 4 GiB
//! and above), System Boot (32), End-of-Table (127). The strings come from
//! the `bios.*`, `system.*`, `board.*` and `chassis.*` variables of
//! bhyve_config(5) with bhyve's defaults.
//!
//! Where bhyve's tables contradict the SMBIOS specification, we follow the
//! specification: the Baseboard's chassis handle and the type 17/19 array
//! handles point at the real Chassis and Memory Array structures (bhyve is
//! off by one), type 19 ending addresses are inclusive, the entry point's
//! maximum structure size is computed (bhyve leaves it unset) and an empty
//! string is "no string" (index 0) instead of a NUL that would cut the
//! string set short.

use bhyve_config::{Config, Topology};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::acpi::sdt::checksum;
use crate::layout::{MemLayout, HIGHMEM_BASE};

/// Where the entry point goes (bhyve's `SMBIOS_BASE`).
pub const SMBIOS_BASE: u64 = 0xf_1000;
/// Where the room ends: bhyve's ACPI tables (RSDP) start here.
pub const SMBIOS_LIMIT: u64 = crate::acpi::ACPI_BASE;
/// Bytes available for the entry point and the structure table (bhyve's
/// `SMBIOS_MAX_LENGTH`).
pub const SMBIOS_MAX_LENGTH: usize = (SMBIOS_LIMIT - SMBIOS_BASE) as usize;
/// Length of the SMBIOS 2.1+ 32-bit entry point.
pub const ENTRY_POINT_LEN: usize = 0x1f;
/// SMBIOS version the tables follow (bhyve: 2.6, the first with the
/// little-endian UUID encoding).
pub const SMBIOS_MAJOR: u8 = 2;
pub const SMBIOS_MINOR: u8 = 6;

/// fw_cfg file names QEMU uses for SMBIOS; SeaBIOS and OVMF read them.
pub const FW_CFG_ANCHOR: &str = "etc/smbios/smbios-anchor";
pub const FW_CFG_TABLES: &str = "etc/smbios/smbios-tables";

/// Structure types.
pub const TYPE_BIOS: u8 = 0;
pub const TYPE_SYSTEM: u8 = 1;
pub const TYPE_BOARD: u8 = 2;
pub const TYPE_CHASSIS: u8 = 3;
pub const TYPE_PROCESSOR: u8 = 4;
pub const TYPE_MEMARRAY: u8 = 16;
pub const TYPE_MEMDEVICE: u8 = 17;
pub const TYPE_MEMARRAYMAP: u8 = 19;
pub const TYPE_BOOT: u8 = 32;
pub const TYPE_EOT: u8 = 127;

/// bhyve's BIOS version and date defaults (the date format is the
/// specification's mm/dd/yyyy).
pub const FIRMWARE_VERSION: &str = "14.0";
pub const FIRMWARE_RELEASE_DATE: &str = "10/17/2021";

/// FreeBSD's `MAXHOSTNAMELEN`: bhyve hashes the whole host name buffer of
/// this size, not just the name.
const MAXHOSTNAMELEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmbiosError {
    #[error("invalid UUID '{0}'")]
    BadUuid(String),
    #[error("{0}: SMBIOS strings cannot contain a NUL character")]
    BadString(&'static str),
    #[error("SMBIOS: cannot read the host name: {0}")]
    HostName(String),
    #[error("SMBIOS: invalid CPU topology ({sockets} sockets, {cores} cores, {threads} threads)")]
    BadTopology {
        sockets: u16,
        cores: u16,
        threads: u16,
    },
    #[error(
        "SMBIOS tables: {0} bytes do not fit in the {SMBIOS_MAX_LENGTH} bytes at {SMBIOS_BASE:#x}"
    )]
    TooBig(usize),
    #[error("SMBIOS tables: writing guest memory at {SMBIOS_BASE:#x}: {0}")]
    GuestMemory(String),
}

/// BIOS Information (type 0) strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosInfo {
    pub vendor: String,
    pub version: String,
    pub release_date: String,
}

/// System Information (type 1) strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub manufacturer: String,
    pub product_name: String,
    pub version: String,
    pub serial_number: String,
    pub sku: String,
    pub family_name: String,
}

/// Baseboard Information (type 2) strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardInfo {
    pub manufacturer: String,
    pub product_name: String,
    pub version: String,
    pub serial_number: String,
    pub asset_tag: String,
    pub location: String,
}

/// System Enclosure (type 3) strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisInfo {
    pub manufacturer: String,
    pub version: String,
    pub serial_number: String,
    pub asset_tag: String,
    pub sku: String,
}

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmbiosSpec {
    /// The system UUID exactly as its 16 bytes appear in the type 1
    /// structure (SMBIOS 2.6+ order: the first three RFC 4122 fields
    /// little-endian). [`parse_uuid`] converts from RFC text.
    pub uuid: [u8; 16],
    pub bios: BiosInfo,
    pub system: SystemInfo,
    pub board: BoardInfo,
    pub chassis: ChassisInfo,
    /// Guest RAM mapped at 0 and at 4 GiB (`MemLayout`'s split).
    pub lowmem: u64,
    pub highmem: u64,
    pub sockets: u16,
    pub cores: u16,
    pub threads: u16,
}

/// Reads `name` from the tree (expanded, as bhyve's `get_config_value`),
/// falling back to bhyve's default.
fn var(cfg: &Config, name: &str, default: &str) -> String {
    cfg.get(name).unwrap_or_else(|| default.to_string())
}

impl SmbiosSpec {
    /// bhyve's default strings, a nil UUID, and the given RAM and
    /// topology.
    pub fn new(layout: &MemLayout, topology: &Topology) -> Self {
        Self::from_config_with_host(&Config::new(), layout, topology, b"")
            .map(|mut s| {
                s.uuid = [0; 16];
                s
            })
            .expect("the empty tree has no UUID to reject")
    }

    /// The tables bhyve builds for `cfg`: `uuid` (`-U`) or, when unset,
    /// the UUID derived from this host's name and the VM `name`.
    pub fn from_config(
        cfg: &Config,
        layout: &MemLayout,
        topology: &Topology,
    ) -> Result<Self, SmbiosError> {
        let host = if cfg.get("uuid").is_some() {
            Vec::new()
        } else {
            host_name()?
        };
        Self::from_config_with_host(cfg, layout, topology, &host)
    }

    /// [`SmbiosSpec::from_config`] with the host name given (tests, and
    /// callers that already know it).
    pub fn from_config_with_host(
        cfg: &Config,
        layout: &MemLayout,
        topology: &Topology,
        hostname: &[u8],
    ) -> Result<Self, SmbiosError> {
        let uuid = match cfg.get("uuid") {
            Some(text) => parse_uuid(&text)?,
            None => default_uuid(cfg.get("name").unwrap_or_default().as_bytes(), hostname),
        };
        let spec = SmbiosSpec {
            uuid,
            bios: BiosInfo {
                vendor: var(cfg, "bios.vendor", "BHYVE"),
                version: var(cfg, "bios.version", FIRMWARE_VERSION),
                release_date: var(cfg, "bios.release_date", FIRMWARE_RELEASE_DATE),
            },
            system: SystemInfo {
                manufacturer: var(cfg, "system.manufacturer", "FreeBSD"),
                product_name: var(cfg, "system.product_name", "BHYVE"),
                version: var(cfg, "system.version", "1.0"),
                serial_number: var(cfg, "system.serial_number", "None"),
                sku: var(cfg, "system.sku", "None"),
                family_name: var(cfg, "system.family_name", "Virtual Machine"),
            },
            board: BoardInfo {
                manufacturer: var(cfg, "board.manufacturer", "FreeBSD"),
                product_name: var(cfg, "board.product_name", "BHYVE"),
                version: var(cfg, "board.version", "1.0"),
                serial_number: var(cfg, "board.serial_number", "None"),
                asset_tag: var(cfg, "board.asset_tag", "None"),
                location: var(cfg, "board.location", "None"),
            },
            chassis: ChassisInfo {
                manufacturer: var(cfg, "chassis.manufacturer", "FreeBSD"),
                version: var(cfg, "chassis.version", "1.0"),
                serial_number: var(cfg, "chassis.serial_number", "None"),
                asset_tag: var(cfg, "chassis.asset_tag", "None"),
                sku: var(cfg, "chassis.sku", "None"),
            },
            lowmem: layout.lowmem(),
            highmem: layout.highmem(),
            sockets: topology.sockets,
            cores: topology.cores,
            threads: topology.threads,
        };
        spec.check_strings()?;
        Ok(spec)
    }

    /// Every string with the configuration variable it comes from.
    fn strings(&self) -> [(&'static str, &str); 20] {
        let (b, s, m, c) = (&self.bios, &self.system, &self.board, &self.chassis);
        [
            ("bios.vendor", &b.vendor),
            ("bios.version", &b.version),
            ("bios.release_date", &b.release_date),
            ("system.manufacturer", &s.manufacturer),
            ("system.product_name", &s.product_name),
            ("system.version", &s.version),
            ("system.serial_number", &s.serial_number),
            ("system.sku", &s.sku),
            ("system.family_name", &s.family_name),
            ("board.manufacturer", &m.manufacturer),
            ("board.product_name", &m.product_name),
            ("board.version", &m.version),
            ("board.serial_number", &m.serial_number),
            ("board.asset_tag", &m.asset_tag),
            ("board.location", &m.location),
            ("chassis.manufacturer", &c.manufacturer),
            ("chassis.version", &c.version),
            ("chassis.serial_number", &c.serial_number),
            ("chassis.asset_tag", &c.asset_tag),
            ("chassis.sku", &c.sku),
        ]
    }

    /// A NUL would end the string early and shift every later string of
    /// the structure, so it is refused rather than silently cut.
    fn check_strings(&self) -> Result<(), SmbiosError> {
        match self.strings().iter().find(|(_, v)| v.contains('\0')) {
            Some((name, _)) => Err(SmbiosError::BadString(name)),
            None => Ok(()),
        }
    }
}

/// Parses RFC 4122 text (`01234567-89ab-cdef-0123-456789abcdef`) the way
/// FreeBSD's `uuid_from_string` does — an empty string is the nil UUID,
/// and the variant must be one `uuid(3)` knows (not 111x) — and returns
/// the bytes in SMBIOS order (first three fields little-endian, bhyve's
/// `uuid_enc_le`).
pub fn parse_uuid(text: &str) -> Result<[u8; 16], SmbiosError> {
    if text.is_empty() {
        return Ok([0; 16]);
    }
    let bad = || SmbiosError::BadUuid(text.to_string());
    let b = text.as_bytes();
    if b.len() != 36 {
        return Err(bad());
    }
    let mut rfc = [0u8; 16];
    let mut digits = Vec::with_capacity(32);
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return Err(bad());
            }
            continue;
        }
        digits.push(char::from(c).to_digit(16).ok_or_else(bad)? as u8);
    }
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        rfc[i] = (pair[0] << 4) | pair[1];
    }
    if rfc[8] & 0xe0 == 0xe0 {
        return Err(bad());
    }
    Ok(rfc_to_smbios(rfc))
}

/// Swaps between RFC 4122 (big-endian) and SMBIOS byte order; the swap is
/// its own inverse.
pub fn rfc_to_smbios(mut u: [u8; 16]) -> [u8; 16] {
    u[0..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}

/// The UUID as SMBIOS 2.6+ readers (dmidecode, Linux's `product_uuid`)
/// print the type 1 bytes `u`.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let r = rfc_to_smbios(*u);
    let hex = |s: &[u8]| s.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&r[0..4]),
        hex(&r[4..6]),
        hex(&r[6..8]),
        hex(&r[8..10]),
        hex(&r[10..16])
    )
}

/// bhyve's reproducible default UUID: MD5 over the VM name followed by the
/// host name in a `MAXHOSTNAMELEN` buffer (NUL-padded; bhyve leaves the
/// tail of its buffer uninitialised, we zero it), with the version (3)
/// and variant bits set in digest bytes 6 and 8. bhyve copies the digest
/// into the structure as is, so these are SMBIOS-order bytes.
pub fn default_uuid(vmname: &[u8], hostname: &[u8]) -> [u8; 16] {
    let mut host = [0u8; MAXHOSTNAMELEN];
    // gethostname(3) truncates to the buffer and keeps a NUL at the end.
    let n = hostname.len().min(MAXHOSTNAMELEN - 1);
    host[..n].copy_from_slice(&hostname[..n]);
    let mut ctx = md5::Context::new();
    ctx.consume(vmname);
    ctx.consume(host);
    let mut d = ctx.finalize().0;
    d[6] = (d[6] & 0x0f) | 0x30;
    d[8] = (d[8] & 0x3f) | 0x80;
    d
}

/// This host's name, as gethostname(2) reports it (the UTS namespace's).
pub fn host_name() -> Result<Vec<u8>, SmbiosError> {
    let mut name = std::fs::read("/proc/sys/kernel/hostname")
        .map_err(|e| SmbiosError::HostName(e.to_string()))?;
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    Ok(name)
}

/// One structure being built: the formatted area and its string set.
struct Structure {
    bytes: Vec<u8>,
    strings: Vec<u8>,
    count: u8,
}

impl Structure {
    fn new(kind: u8, len: usize, handle: u16) -> Self {
        let mut bytes = vec![0u8; len];
        bytes[0] = kind;
        bytes[1] = len as u8;
        bytes[2..4].copy_from_slice(&handle.to_le_bytes());
        Structure {
            bytes,
            strings: Vec::new(),
            count: 0,
        }
    }

    fn u8(&mut self, at: usize, v: u8) {
        self.bytes[at] = v;
    }

    fn u16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, at: usize, v: u64) {
        self.bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Adds `s` to the string set and stores its number at `at`; an empty
    /// string is number 0 ("none").
    fn string(&mut self, at: usize, s: &str) {
        if s.is_empty() {
            return;
        }
        debug_assert!(!s.contains('\0') && self.count < u8::MAX);
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.count += 1;
        self.bytes[at] = self.count;
    }

    /// The structure followed by its string set, which ends with an extra
    /// NUL (two NULs when there are no strings).
    fn finish(mut self) -> Vec<u8> {
        if self.strings.is_empty() {
            self.strings.push(0);
        }
        self.strings.push(0);
        self.bytes.extend_from_slice(&self.strings);
        self.bytes
    }
}

/// The structure table and the entry point that describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smbios {
    /// The 31-byte entry point, checksummed, with the table address given
    /// to [`build_at`].
    pub entry_point: Vec<u8>,
    /// The structures, ending with type 127.
    pub tables: Vec<u8>,
}

/// Builds the structures for `spec`; returns them with their count and
/// the largest structure's size.
fn structures(spec: &SmbiosSpec) -> Result<(Vec<u8>, u16, u16), SmbiosError> {
    spec.check_strings()?;
    let (sockets, cores, threads) = (spec.sockets, spec.cores, spec.threads);
    if sockets == 0 || cores == 0 || threads == 0 {
        return Err(SmbiosError::BadTopology {
            sockets,
            cores,
            threads,
        });
    }
    // Whatever the topology, the table must fit in its room; checking the
    // count first keeps a huge socket count from allocating.
    let processors = usize::from(sockets) * 0x2a;
    if processors > SMBIOS_MAX_LENGTH {
        return Err(SmbiosError::TooBig(processors));
    }

    let mut out: Vec<Vec<u8>> = Vec::new();
    let next_handle = |out: &Vec<Vec<u8>>| out.len() as u16 + 1;

    // Type 0: BIOS at segment 0xf000; ISA, PCI, shadowing, CD boot, EDD;
    // ACPI; BIOS boot specification, virtual machine.
    let mut t = Structure::new(TYPE_BIOS, 0x18, next_handle(&out));
    t.string(0x04, &spec.bios.vendor);
    t.string(0x05, &spec.bios.version);
    t.u16(0x06, 0xf000);
    t.string(0x08, &spec.bios.release_date);
    t.u64(0x0a, 0x10 | 0x80 | 0x1000 | 0x8000 | 0x8_0000);
    t.u8(0x12, 0x01);
    t.u8(0x13, 0x01 | 0x10);
    t.u8(0x16, 0xff);
    t.u8(0x17, 0xff);
    out.push(t.finish());

    // Type 1: wake-up by power switch.
    let s = &spec.system;
    let mut t = Structure::new(TYPE_SYSTEM, 0x1b, next_handle(&out));
    t.string(0x04, &s.manufacturer);
    t.string(0x05, &s.product_name);
    t.string(0x06, &s.version);
    t.string(0x07, &s.serial_number);
    t.bytes[0x08..0x18].copy_from_slice(&spec.uuid);
    t.u8(0x18, 0x06);
    t.string(0x19, &s.sku);
    t.string(0x1a, &s.family_name);
    out.push(t.finish());

    // Type 2: a motherboard that hosts other boards, in the chassis that
    // follows it.
    let b = &spec.board;
    let chassis_handle = next_handle(&out) + 1;
    let mut t = Structure::new(TYPE_BOARD, 0x0f, next_handle(&out));
    t.string(0x04, &b.manufacturer);
    t.string(0x05, &b.product_name);
    t.string(0x06, &b.version);
    t.string(0x07, &b.serial_number);
    t.string(0x08, &b.asset_tag);
    t.u8(0x09, 0x01);
    t.string(0x0a, &b.location);
    t.u16(0x0b, chassis_handle);
    t.u8(0x0d, 0x0a);
    out.push(t.finish());

    // Type 3: unknown enclosure type, states "safe", no security.
    let c = &spec.chassis;
    let mut t = Structure::new(TYPE_CHASSIS, 0x16, next_handle(&out));
    t.string(0x04, &c.manufacturer);
    t.u8(0x05, 0x02);
    t.string(0x06, &c.version);
    t.string(0x07, &c.serial_number);
    t.string(0x08, &c.asset_tag);
    for at in 0x09..=0x0c {
        t.u8(at, 0x03);
    }
    t.string(0x15, &c.sku);
    out.push(t.finish());

    // Type 4 per socket: a present, enabled, 64-bit central processor of
    // family "other". Counts that do not fit a byte are "unknown" (0), as
    // bhyve reports them (the 3.0 16-bit fields are not in a 2.6 table).
    let per_socket = |n: u32| if n > 254 { 0 } else { n as u8 };
    for i in 0..sockets {
        let mut t = Structure::new(TYPE_PROCESSOR, 0x2a, next_handle(&out));
        t.string(0x04, &format!("CPU #{i}"));
        t.u8(0x05, 0x03);
        t.u8(0x06, 0x01);
        t.string(0x07, " ");
        t.string(0x10, " ");
        t.u8(0x18, 0x41);
        t.u8(0x19, 0x06);
        for at in [0x1a, 0x1c, 0x1e] {
            t.u16(at, 0xffff);
        }
        t.string(0x20, "None");
        t.string(0x21, "None");
        t.string(0x22, "None");
        t.u8(0x23, per_socket(u32::from(cores)));
        t.u8(0x25, per_socket(u32::from(cores) * u32::from(threads)));
        t.u16(0x26, 0x04);
        t.u16(0x28, 0x01);
        out.push(t.finish());
    }

    // Type 16: system memory on the motherboard, no ECC, capacity in the
    // extended (bytes) field.
    let total = spec.lowmem.saturating_add(spec.highmem);
    let array_handle = next_handle(&out);
    let mut t = Structure::new(TYPE_MEMARRAY, 0x17, array_handle);
    t.u8(0x04, 0x03);
    t.u8(0x05, 0x03);
    t.u8(0x06, 0x03);
    t.u32(0x07, 0x8000_0000);
    t.u16(0x0b, 0xffff);
    t.u16(0x0d, if spec.highmem > 0 { 2 } else { 1 });
    t.u64(0x0f, total);
    out.push(t.finish());

    // Type 17: one 64-bit device of unknown form and type holding all of
    // RAM. Size: KiB with bit 15 set up to 32767 KiB, else MiB up to
    // 32766 MiB, else 0x7fff and the extended MiB field (31 bits).
    let mut t = Structure::new(TYPE_MEMDEVICE, 0x28, next_handle(&out));
    t.u16(0x04, array_handle);
    t.u16(0x06, 0xffff);
    t.u16(0x08, 64);
    t.u16(0x0a, 64);
    let (kib, mib) = (total / 1024, total >> 20);
    if kib <= 0x7fff {
        t.u16(0x0c, kib as u16 | 0x8000);
    } else if mib < 0x7fff {
        t.u16(0x0c, mib as u16);
    } else {
        t.u16(0x0c, 0x7fff);
        t.u32(0x1c, mib.min(0x7fff_ffff) as u32);
    }
    t.u8(0x0e, 0x02);
    t.string(0x10, " ");
    t.string(0x11, " ");
    t.u8(0x12, 0x02);
    t.u16(0x13, 0x0004);
    t.string(0x17, " ");
    t.string(0x18, "None");
    t.string(0x19, "None");
    t.string(0x1a, "None");
    out.push(t.finish());

    // Type 19 per RAM range, addresses in the 64-bit byte fields.
    let mut ranges = vec![(0, spec.lowmem)];
    if spec.highmem > 0 {
        ranges.push((HIGHMEM_BASE, spec.highmem));
    }
    for (start, len) in ranges {
        let mut t = Structure::new(TYPE_MEMARRAYMAP, 0x1f, next_handle(&out));
        t.u32(0x04, 0xffff_ffff);
        t.u32(0x08, 0xffff_ffff);
        t.u16(0x0c, array_handle);
        t.u8(0x0e, 1);
        t.u64(0x0f, start);
        t.u64(0x17, start.saturating_add(len.saturating_sub(1)));
        out.push(t.finish());
    }

    // Type 32: no errors detected.
    out.push(Structure::new(TYPE_BOOT, 0x0b, next_handle(&out)).finish());
    out.push(Structure::new(TYPE_EOT, 0x04, next_handle(&out)).finish());

    let count = out.len() as u16;
    let max = out.iter().map(Vec::len).max().unwrap_or(0);
    let tables: Vec<u8> = out.concat();
    if ENTRY_POINT_LEN + tables.len() > SMBIOS_MAX_LENGTH {
        return Err(SmbiosError::TooBig(ENTRY_POINT_LEN + tables.len()));
    }
    Ok((tables, count, max as u16))
}

/// The SMBIOS 2.6 entry point for a table of `len` bytes and `count`
/// structures at `table_addr`.
fn entry_point(table_addr: u32, len: u16, count: u16, max: u16) -> Vec<u8> {
    let mut e = vec![0u8; ENTRY_POINT_LEN];
    e[0x00..0x04].copy_from_slice(b"_SM_");
    e[0x05] = ENTRY_POINT_LEN as u8;
    e[0x06] = SMBIOS_MAJOR;
    e[0x07] = SMBIOS_MINOR;
    e[0x08..0x0a].copy_from_slice(&max.to_le_bytes());
    e[0x10..0x15].copy_from_slice(b"_DMI_");
    e[0x16..0x18].copy_from_slice(&len.to_le_bytes());
    e[0x18..0x1c].copy_from_slice(&table_addr.to_le_bytes());
    e[0x1c..0x1e].copy_from_slice(&count.to_le_bytes());
    e[0x1e] = (SMBIOS_MAJOR << 4) | SMBIOS_MINOR;
    // The intermediate checksum covers the "_DMI_" part, the outer one
    // the whole entry point (including the intermediate checksum).
    e[0x15] = checksum(&e[0x10..]);
    e[0x04] = checksum(&e);
    e
}

/// Builds the tables with the entry point pointing at `table_addr`.
pub fn build_at(spec: &SmbiosSpec, table_addr: u32) -> Result<Smbios, SmbiosError> {
    let (tables, count, max) = structures(spec)?;
    // structures() keeps the table below SMBIOS_MAX_LENGTH, so it fits
    // the 16-bit length field.
    let entry_point = entry_point(table_addr, tables.len() as u16, count, max);
    Ok(Smbios {
        entry_point,
        tables,
    })
}

/// Builds the tables as they go in guest memory: the entry point at
/// [`SMBIOS_BASE`], the structures right after it.
pub fn build(spec: &SmbiosSpec) -> Result<Smbios, SmbiosError> {
    build_at(spec, (SMBIOS_BASE + ENTRY_POINT_LEN as u64) as u32)
}

/// Builds the tables for `spec` and writes them at [`SMBIOS_BASE`].
pub fn write<M: GuestMemoryBackend>(mem: &M, spec: &SmbiosSpec) -> Result<(), SmbiosError> {
    let s = build(spec)?;
    let mut bytes = s.entry_point;
    bytes.extend_from_slice(&s.tables);
    mem.write_slice(&bytes, GuestAddress(SMBIOS_BASE))
        .map_err(|e| SmbiosError::GuestMemory(e.to_string()))
}

/// The contents of QEMU's fw_cfg files [`FW_CFG_ANCHOR`] and
/// [`FW_CFG_TABLES`], for firmware that builds its own SMBIOS area:
/// SeaBIOS requires an anchor of exactly the 2.1 entry point's size whose
/// table length matches the tables file, places the tables itself and
/// patches the address (left 0 here) and checksums; OVMF only reads the
/// tables.
pub fn fw_cfg_files(spec: &SmbiosSpec) -> Result<(Vec<u8>, Vec<u8>), SmbiosError> {
    let s = build_at(spec, 0)?;
    Ok((s.entry_point, s.tables))
}

#[cfg(test)]
#[path = "smbios_tests.rs"]
mod tests;
