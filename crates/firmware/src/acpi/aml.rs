//! A small AML encoder: the handful of ASL constructs bhyve's DSDT uses
//! (ACPI 6.5 §20.2 grammar, §6.4 resource descriptors).
//!
//! Every constructor returns the encoded bytes, so terms nest by value:
//! `device("COM1", &[name("_HID", &eisa_id("PNP0501")?)?, ...].concat())`.
//! Names are checked (`BadName`) rather than trusted, so a later caller
//! that builds names at run time cannot produce a malformed namespace.

pub use super::resource::ResourceTemplate;
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
const METHOD_OP: u8 = 0x14;
const LOCAL0_OP: u8 = 0x60;
const ARG0_OP: u8 = 0x68;
const STORE_OP: u8 = 0x70;
const DECREMENT_OP: u8 = 0x76;
const SHIFT_LEFT_OP: u8 = 0x79;
const AND_OP: u8 = 0x7b;
const OR_OP: u8 = 0x7d;
const FIND_SET_RIGHT_BIT_OP: u8 = 0x82;
const CREATE_WORD_FIELD_OP: u8 = 0x8b;
const LEQUAL_OP: u8 = 0x93;
const LLESS_OP: u8 = 0x95;
const IF_OP: u8 = 0xa0;
const ELSE_OP: u8 = 0xa1;
const RETURN_OP: u8 = 0xa4;
const OP_REGION_OP: u8 = 0x80;
const FIELD_OP: u8 = 0x81;
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
        if encoded_len(total) == Some(extra) {
            return raw_pkg_length(total);
        }
    }
    Err(AcpiError::TooBig(body_len.min(PKG_LENGTH_MAX + 1)))
}

/// How many bytes a PkgLength holding `v` takes.
fn encoded_len(v: usize) -> Option<usize> {
    match v {
        0..=0x3f => Some(1),
        0x40..=0xfff => Some(2),
        0x1000..=0xf_ffff => Some(3),
        0x10_0000..=PKG_LENGTH_MAX => Some(4),
        _ => None,
    }
}

/// The PkgLength encoding of `v` itself (field widths use it this way:
/// a bit count, not counting the encoding).
fn raw_pkg_length(v: usize) -> Result<Vec<u8>, AcpiError> {
    let n = encoded_len(v).ok_or(AcpiError::TooBig(v.min(PKG_LENGTH_MAX + 1)))?;
    if n == 1 {
        return Ok(vec![v as u8]);
    }
    let mut out = vec![(((n - 1) as u8) << 6) | (v & 0xf) as u8];
    for i in 0..n - 1 {
        out.push((v >> (4 + 8 * i)) as u8);
    }
    Ok(out)
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

/// `Local0`, `Arg0`: method locals and arguments used by bhyve's DSDT.
pub const LOCAL0: &[u8] = &[LOCAL0_OP];
pub const ARG0: &[u8] = &[ARG0_OP];
/// The NullName target: an operator's result is not stored.
pub const NO_TARGET: &[u8] = &[ZERO_OP];
/// OperationRegion space: PCI configuration space of the device whose
/// `_ADR` (and the bridge's `_BBN`) encloses the region.
pub const REGION_PCI_CONFIG: u8 = 2;
/// Field flags: AnyAcc, NoLock, Preserve.
pub const FIELD_ANY_NOLOCK_PRESERVE: u8 = 0;

/// `Method (name, args, NotSerialized) { body }`.
pub fn method(n: &str, args: u8, body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    if args > 7 {
        return Err(AcpiError::BadName(format!("{n} with {args} arguments")));
    }
    let mut head = name_string(n)?;
    head.push(args);
    with_pkg(&[METHOD_OP], &head, body)
}

/// A method call `path (args...)`; the callee's arity comes from its
/// definition, so the arguments simply follow the name.
pub fn call(path: &str, args: &[&[u8]]) -> Result<Vec<u8>, AcpiError> {
    let mut o = name_string(path)?;
    o.extend(args.concat());
    Ok(o)
}

/// `If (predicate) { body }`.
pub fn if_(predicate: &[u8], body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    with_pkg(&[IF_OP], predicate, body)
}

/// `Else { body }`, directly after an [`if_`].
pub fn else_(body: &[u8]) -> Result<Vec<u8>, AcpiError> {
    with_pkg(&[ELSE_OP], &[], body)
}

/// `Return (value)`.
pub fn ret(value: &[u8]) -> Vec<u8> {
    [&[RETURN_OP], value].concat()
}

/// `Store (source, destination)`.
pub fn store(source: &[u8], destination: &[u8]) -> Vec<u8> {
    [&[STORE_OP], source, destination].concat()
}

/// `And (a, b, target)`.
pub fn and(a: &[u8], b: &[u8], target: &[u8]) -> Vec<u8> {
    [&[AND_OP], a, b, target].concat()
}

/// `Or (a, b, target)`.
pub fn or(a: &[u8], b: &[u8], target: &[u8]) -> Vec<u8> {
    [&[OR_OP], a, b, target].concat()
}

/// `ShiftLeft (value, count, target)`.
pub fn shift_left(value: &[u8], count: &[u8], target: &[u8]) -> Vec<u8> {
    [&[SHIFT_LEFT_OP], value, count, target].concat()
}

/// `FindSetRightBit (value, target)`: 1 + index of the lowest set bit,
/// 0 when none is set.
pub fn find_set_right_bit(value: &[u8], target: &[u8]) -> Vec<u8> {
    [&[FIND_SET_RIGHT_BIT_OP], value, target].concat()
}

/// `Decrement (name)`.
pub fn decrement(name: &[u8]) -> Vec<u8> {
    [&[DECREMENT_OP], name].concat()
}

/// `LEqual (a, b)`.
pub fn lequal(a: &[u8], b: &[u8]) -> Vec<u8> {
    [&[LEQUAL_OP], a, b].concat()
}

/// `LLess (a, b)`.
pub fn lless(a: &[u8], b: &[u8]) -> Vec<u8> {
    [&[LLESS_OP], a, b].concat()
}

/// `CreateWordField (buffer, byte_index, name)`.
pub fn create_word_field(buffer: &[u8], byte_index: &[u8], n: &str) -> Result<Vec<u8>, AcpiError> {
    let n = name_string(n)?;
    Ok([&[CREATE_WORD_FIELD_OP], buffer, byte_index, &n].concat())
}

/// `OperationRegion (name, space, offset, length)`.
pub fn operation_region(n: &str, space: u8, offset: u64, len: u64) -> Result<Vec<u8>, AcpiError> {
    let mut o = vec![EXT_OP_PREFIX, OP_REGION_OP];
    o.extend(name_string(n)?);
    o.push(space);
    o.extend(int(offset));
    o.extend(int(len));
    Ok(o)
}

/// One entry of a [`field`] list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldUnit {
    /// `NAME, bits`.
    Named(String, u32),
    /// `Offset (byte)`: skip forward to this byte of the region.
    Offset(u32),
}

/// `Field (region, flags) { units }`.
pub fn field(region: &str, flags: u8, units: &[FieldUnit]) -> Result<Vec<u8>, AcpiError> {
    let mut head = name_string(region)?;
    head.push(flags);
    let mut body = Vec::new();
    let mut bit = 0usize;
    for u in units {
        match u {
            FieldUnit::Named(n, bits) => {
                body.extend(name_seg(n)?);
                body.extend(raw_pkg_length(*bits as usize)?);
                bit += *bits as usize;
            }
            FieldUnit::Offset(byte) => {
                let to = *byte as usize * 8;
                let skip = to.checked_sub(bit).ok_or_else(|| {
                    AcpiError::BadName(format!("{region}: Offset ({byte:#x}) goes back"))
                })?;
                if skip > 0 {
                    body.push(0); // ReservedField
                    body.extend(raw_pkg_length(skip)?);
                }
                bit = to;
            }
        }
    }
    with_pkg(&[EXT_OP_PREFIX, FIELD_OP], &head, &body)
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
        // Resource templates are checked in resource.rs.
        assert!(string("a\0b").is_err());
        assert_eq!(string("ab").unwrap(), [0x0d, b'a', b'b', 0]);
    }
    #[test]
    fn methods_and_control_flow() {
        // Method (_PIC, 1, NotSerialized) { Store (Arg0, PICM) }
        let m = method("_PIC", 1, &store(ARG0, &name_string("PICM").unwrap())).unwrap();
        assert_eq!(m, b"\x14\x0c_PIC\x01\x70\x68PICM");
        // If (And (Arg0, 0x80)) { Return (Zero) } Else { Return (One) }
        let i = if_(&and(ARG0, &int(0x80), NO_TARGET), &ret(&int(0))).unwrap();
        assert_eq!(i, [0xa0, 0x08, 0x7b, 0x68, 0x0a, 0x80, 0x00, 0xa4, 0x00]);
        assert_eq!(else_(&ret(&int(1))).unwrap(), [0xa1, 0x03, 0xa4, 0x01]);
        assert!(method("M", 8, &[]).is_err());
        assert_eq!(lless(LOCAL0, &int(3)), [0x95, 0x60, 0x0a, 0x03]);
        assert_eq!(lequal(LOCAL0, &int(8)), [0x93, 0x60, 0x0a, 0x08]);
        assert_eq!(or(LOCAL0, &int(1), LOCAL0), [0x7d, 0x60, 0x01, 0x60]);
        // ShiftLeft (One, Local0, CIRA); FindSetRightBit (SIRA, Local0);
        // Store (Decrement (Local0), PIRA)
        let cira = name_string("CIRA").unwrap();
        assert_eq!(shift_left(&int(1), LOCAL0, &cira), b"\x79\x01\x60CIRA");
        let sira = name_string("SIRA").unwrap();
        assert_eq!(find_set_right_bit(&sira, LOCAL0), b"\x82SIRA\x60");
        let pira = name_string("PIRA").unwrap();
        assert_eq!(store(&decrement(LOCAL0), &pira), b"\x70\x76\x60PIRA");
        assert_eq!(call("PIRV", &[&pira]).unwrap(), b"PIRVPIRA".to_vec());
    }

    #[test]
    fn regions_and_fields() {
        assert_eq!(
            operation_region("LPCR", REGION_PCI_CONFIG, 0, 0x100).unwrap(),
            b"\x5b\x80LPCR\x02\x00\x0b\x00\x01"
        );
        // Offset (0x60) is a ReservedField of 0x300 bits (PkgLength
        // 0x40 0x30), then PIRA, 8.
        let f = field(
            "LPCR",
            FIELD_ANY_NOLOCK_PRESERVE,
            &[FieldUnit::Offset(0x60), FieldUnit::Named("PIRA".into(), 8)],
        )
        .unwrap();
        assert_eq!(f, b"\x5b\x81\x0eLPCR\x00\x00\x40\x30PIRA\x08");
        // Offset at the current position adds nothing; going back fails.
        let f = field(
            "R",
            0,
            &[FieldUnit::Named("A".into(), 8), FieldUnit::Offset(1)],
        )
        .unwrap();
        assert_eq!(f, b"\x5b\x81\x0bR___\x00A___\x08");
        assert!(field(
            "R",
            0,
            &[FieldUnit::Named("A".into(), 16), FieldUnit::Offset(1)]
        )
        .is_err());
        assert_eq!(
            create_word_field(ARG0, &int(1), "SIRA").unwrap(),
            b"\x8b\x68\x01SIRA"
        );
        assert_eq!(raw_pkg_length(0x300).unwrap(), [0x40, 0x30]);
        assert_eq!(raw_pkg_length(8).unwrap(), [8]);
    }
}
