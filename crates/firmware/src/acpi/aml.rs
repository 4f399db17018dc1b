//! A small AML encoder: the handful of ASL constructs bhyve's DSDT uses
//! (ACPI 6.5 §20.2 grammar, §6.4 resource descriptors).
//!
//! Every constructor returns the encoded bytes, so terms nest by value:
//! `device("COM1", &[name("_HID", &eisa_id("PNP0501")?)?, ...].concat())`.
//! Names are checked (`BadName`) rather than trusted, so a later caller
//! that builds names at run time cannot produce a malformed namespace.

use super::AcpiError;

const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const STRING_PREFIX: u8 = 0x0d;
const QWORD_PREFIX: u8 = 0x0e;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const DUAL_NAME_PREFIX: u8 = 0x2e;
const MULTI_NAME_PREFIX: u8 = 0x2f;
const EXT_OP_PREFIX: u8 = 0x5b;
const DEVICE_OP: u8 = 0x82;
const ROOT_CHAR: u8 = b'\\';

/// Largest length a PkgLength can encode (28 bits).
const PKG_LENGTH_MAX: usize = (1 << 28) - 1;

/// One 4-character name segment; shorter names are padded with `_`,
/// as ASL does.
fn name_seg(s: &str) -> Result<[u8; 4], AcpiError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 4
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_');
    if !ok {
        return Err(AcpiError::BadName(s.to_string()));
    }
    let mut seg = [b'_'; 4];
    seg[..b.len()].copy_from_slice(b);
    Ok(seg)
}

/// A NameString: `\` for the root, then dot-separated segments
/// (`\_SB.COM1`, `_S5`).
pub fn name_string(path: &str) -> Result<Vec<u8>, AcpiError> {
    let mut out = Vec::new();
    let rel = match path.strip_prefix('\\') {
        Some(r) => {
            out.push(ROOT_CHAR);
            r
        }
        None => path,
    };
    if rel.is_empty() {
        if out.is_empty() {
            return Err(AcpiError::BadName(path.to_string()));
        }
        out.push(0); // NullName: the root itself
        return Ok(out);
    }
    let segs = rel
        .split('.')
        .map(name_seg)
        .collect::<Result<Vec<_>, _>>()?;
    match segs.len() {
        1 => {}
        2 => out.push(DUAL_NAME_PREFIX),
        n if n < 256 => {
            out.push(MULTI_NAME_PREFIX);
            out.push(n as u8);
        }
        _ => return Err(AcpiError::BadName(path.to_string())),
    }
    for s in segs {
        out.extend_from_slice(&s);
    }
    Ok(out)
}

/// PkgLength for a body of `body_len` bytes; the encoded length counts
/// its own bytes.
fn pkg_length(body_len: usize) -> Result<Vec<u8>, AcpiError> {
    for extra in 1..=4usize {
        let total = body_len + extra;
        let limit = if extra == 1 {
            1 << 6
        } else {
            1 << (4 + 8 * (extra - 1))
        };
        if total < limit {
            if extra == 1 {
                return Ok(vec![total as u8]);
            }
            let mut v = vec![(((extra - 1) as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra - 1 {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            return Ok(v);
        }
    }
    Err(AcpiError::TooBig(body_len.min(PKG_LENGTH_MAX + 1)))
}

/// `op PkgLength head body`, the shape of Scope/Device/Package/Buffer.
fn with_pkg(op: &[u8], head: &[u8], body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    let mut out = op.to_vec();
    out.extend(pkg_length(head.len() + body.len())?);
    out.extend_from_slice(head);
    out.extend_from_slice(body);
    Ok(out)
}

/// An integer in its shortest encoding (Zero, One, Byte…QWord).
pub fn int(v: u64) -> Vec<u8> {
    match v {
        0 => vec![ZERO_OP],
        1 => vec![ONE_OP],
        2..=0xff => vec![BYTE_PREFIX, v as u8],
        0x100..=0xffff => {
            let mut o = vec![WORD_PREFIX];
            o.extend((v as u16).to_le_bytes());
            o
        }
        0x1_0000..=0xffff_ffff => {
            let mut o = vec![DWORD_PREFIX];
            o.extend((v as u32).to_le_bytes());
            o
        }
        _ => {
            let mut o = vec![QWORD_PREFIX];
            o.extend(v.to_le_bytes());
            o
        }
    }
}

/// A string constant (ASCII, no NUL inside).
pub fn string(s: &str) -> Result<Vec<u8>, AcpiError> {
    if !s.bytes().all(|c| (1..0x80).contains(&c)) {
        return Err(AcpiError::BadName(s.to_string()));
    }
    let mut o = vec![STRING_PREFIX];
    o.extend_from_slice(s.as_bytes());
    o.push(0);
    Ok(o)
}

/// `EisaId ("PNP0501")`: three letters and four hex digits compressed
/// into a 32-bit integer.
pub fn eisa_id(id: &str) -> Result<Vec<u8>, AcpiError> {
    let b = id.as_bytes();
    let bad = || AcpiError::BadName(id.to_string());
    if b.len() != 7 || !b[..3].iter().all(u8::is_ascii_uppercase) {
        return Err(bad());
    }
    let hex = |c: u8| (c as char).to_digit(16).filter(|_| !c.is_ascii_lowercase());
    let mut digits = [0u8; 4];
    for (d, c) in digits.iter_mut().zip(&b[3..]) {
        *d = hex(*c).ok_or_else(bad)? as u8;
    }
    let letters =
        (u16::from(b[0] - 0x40) << 10) | (u16::from(b[1] - 0x40) << 5) | u16::from(b[2] - 0x40);
    let bytes = [
        (letters >> 8) as u8,
        letters as u8,
        (digits[0] << 4) | digits[1],
        (digits[2] << 4) | digits[3],
    ];
    Ok(int(u64::from(u32::from_le_bytes(bytes))))
}

/// `Name (NAME, value)`.
pub fn name(n: &str, value: &[u8]) -> Result<Vec<u8>, AcpiError> {
    let mut o = vec![NAME_OP];
    o.extend(name_string(n)?);
    o.extend_from_slice(value);
    Ok(o)
}

/// `Scope (path) { body }`.
pub fn scope(path: &str, body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    with_pkg(&[SCOPE_OP], &name_string(path)?, body)
}

/// `Device (name) { body }`.
pub fn device(n: &str, body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    with_pkg(&[EXT_OP_PREFIX, DEVICE_OP], &name_string(n)?, body)
}

/// `Package () { elements }` (at most 255 elements).
pub fn package(elements: &[Vec<u8>]) -> Result<Vec<u8>, AcpiError> {
    let count = u8::try_from(elements.len()).map_err(|_| AcpiError::TooBig(elements.len()))?;
    with_pkg(&[PACKAGE_OP], &[count], &elements.concat())
}

/// `Buffer () { bytes }`.
pub fn buffer(bytes: &[u8]) -> Result<Vec<u8>, AcpiError> {
    with_pkg(&[BUFFER_OP], &int(bytes.len() as u64), bytes)
}

/// Resource descriptors for `_CRS`, closed by an End Tag when built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceTemplate(Vec<u8>);

impl ResourceTemplate {
    pub fn new() -> Self {
        Self::default()
    }

    /// `IO (Decode16, base, base, 1, len)`: a fixed port range.
    pub fn io(mut self, base: u16, len: u8) -> Self {
        let b = base.to_le_bytes();
        self.0
            .extend_from_slice(&[0x47, 0x01, b[0], b[1], b[0], b[1], 0x01, len]);
        self
    }

    /// `IRQNoFlags () {irq}`: an ISA IRQ (edge, active-high, exclusive).
    pub fn irq_no_flags(mut self, irq: u8) -> Self {
        let mask = 1u16.checked_shl(u32::from(irq)).unwrap_or(0).to_le_bytes();
        self.0.extend_from_slice(&[0x22, mask[0], mask[1]]);
        self
    }

    /// `Memory32Fixed (ReadWrite, base, len)`.
    pub fn memory32_fixed(mut self, base: u32, len: u32) -> Self {
        self.0.extend_from_slice(&[0x86, 0x09, 0x00, 0x01]);
        self.0.extend_from_slice(&base.to_le_bytes());
        self.0.extend_from_slice(&len.to_le_bytes());
        self
    }

    /// The template as a Buffer term (End Tag with checksum 0, which
    /// means "no checksum").
    pub fn build(&self) -> Result<Vec<u8>, AcpiError> {
        let mut b = self.0.clone();
        b.extend_from_slice(&[0x79, 0x00]);
        buffer(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_use_the_shortest_encoding() {
        assert_eq!(int(0), [0x00]);
        assert_eq!(int(1), [0x01]);
        assert_eq!(int(5), [0x0a, 5]);
        assert_eq!(int(0x3f8), [0x0b, 0xf8, 0x03]);
        assert_eq!(int(0xfed0_0000), [0x0c, 0, 0, 0xd0, 0xfe]);
        assert_eq!(int(1 << 32)[0], 0x0e);
    }

    #[test]
    fn eisa_ids_compress() {
        // PNP0501 → 0x0105D041, as every PC firmware encodes it.
        assert_eq!(eisa_id("PNP0501").unwrap(), int(0x0105_d041));
        assert_eq!(eisa_id("PNP0B00").unwrap(), int(0x000b_d041));
        assert!(eisa_id("pnp0501").is_err());
        assert!(eisa_id("PNP05").is_err());
        assert!(eisa_id("PNP05G1").is_err());
    }

    #[test]
    fn names_are_padded_and_checked() {
        assert_eq!(name_string("_S5").unwrap(), b"_S5_");
        assert_eq!(name_string("\\_SB").unwrap(), b"\\_SB_");
        assert_eq!(name_string("_SB.COM1").unwrap(), b"\x2e_SB_COM1");
        assert_eq!(name_string("\\A.B.C").unwrap(), b"\\\x2f\x03A___B___C___");
        assert_eq!(name_string("\\").unwrap(), [b'\\', 0]);
        for bad in ["", "com1", "TOOLONG", "1ABC", "A..B", "A-B"] {
            assert!(name_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkg_length_counts_itself() {
        assert_eq!(pkg_length(0).unwrap(), [1]);
        assert_eq!(pkg_length(62).unwrap(), [63]);
        // 63 + 2 = 65 = 0x41: two bytes, low nibble 1, then 0x4.
        assert_eq!(pkg_length(63).unwrap(), [0x41, 0x04]);
        assert_eq!(pkg_length(4093).unwrap(), [0x4f, 0xff]);
        assert_eq!(pkg_length(4094).unwrap(), [0x81, 0x00, 0x01]);
        assert_eq!(pkg_length(PKG_LENGTH_MAX - 4).unwrap().len(), 4);
        assert!(pkg_length(PKG_LENGTH_MAX).is_err());
    }

    #[test]
    fn terms() {
        assert_eq!(
            name("_S5", &package(&[int(5), int(0)]).unwrap()).unwrap(),
            [0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00]
        );
        let d = device("RTC", &[]).unwrap();
        assert_eq!(d, [0x5b, 0x82, 0x05, b'R', b'T', b'C', b'_']);
        let crs = ResourceTemplate::new()
            .io(0x70, 2)
            .irq_no_flags(8)
            .build()
            .unwrap();
        assert_eq!(
            crs,
            [
                0x11, 0x10, 0x0a, 0x0d, // Buffer, PkgLength 16, size 13
                0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, // IO
                0x22, 0x00, 0x01, // IRQ 8
                0x79, 0x00, // End Tag
            ]
        );
        assert!(string("a\0b").is_err());
        assert_eq!(string("ab").unwrap(), [0x0d, b'a', b'b', 0]);
    }
}
