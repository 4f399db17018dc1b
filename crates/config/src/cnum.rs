//! C library number parsing as bhyve relies on it: `strtoul`/`strtol` with
//! base 0 and `sscanf("%d")`. bhyve's accepted inputs are defined by these
//! functions (hex and octal prefixes, leading blanks, trailing text left
//! for the caller), so they are reproduced rather than replaced by Rust's
//! stricter `str::parse`.

/// Result of a `strto*` scan: the value, how many bytes were consumed
/// (0 when no digits were found, like `endptr == nptr`), and whether the
/// value overflowed (`ERANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    pub value: u64,
    pub negative: bool,
    pub end: usize,
    pub overflow: bool,
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Magnitude scan shared by the `strto*` family with base 0 (or a fixed
/// base when `base != 0`).
pub(crate) fn scan(s: &str, base: u32) -> Scan {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        negative = b[i] == b'-';
        i += 1;
    }
    let mut radix = base;
    let hex_prefix = i + 1 < b.len() && b[i] == b'0' && (b[i + 1] | 0x20) == b'x';
    if (radix == 0 || radix == 16)
        && hex_prefix
        && i + 2 < b.len()
        && (b[i + 2] as char).is_ascii_hexdigit()
    {
        i += 2;
        radix = 16;
    } else if radix == 0 {
        radix = if i < b.len() && b[i] == b'0' { 8 } else { 10 };
    }
    let start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(radix) else {
            break;
        };
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return Scan {
            value: 0,
            negative: false,
            end: 0,
            overflow: false,
        };
    }
    Scan {
        value: if overflow { u64::MAX } else { value },
        negative,
        end: i,
        overflow,
    }
}

/// `strtoul(s, &end, 0)` on LP64: `(value, end)`; a minus sign negates
/// modulo 2^64, overflow saturates to `u64::MAX`.
pub(crate) fn strtoul(s: &str) -> (u64, usize, bool) {
    let r = scan(s, 0);
    let v = if r.overflow {
        u64::MAX
    } else if r.negative {
        r.value.wrapping_neg()
    } else {
        r.value
    };
    (v, r.end, r.overflow)
}

/// `strtol(s, &end, 0)` on LP64: `(value, end, overflowed)`.
pub(crate) fn strtol(s: &str) -> (i64, usize, bool) {
    let r = scan(s, 0);
    let limit = if r.negative {
        i64::MAX as u64 + 1
    } else {
        i64::MAX as u64
    };
    if r.overflow || r.value > limit {
        let v = if r.negative { i64::MIN } else { i64::MAX };
        return (v, r.end, true);
    }
    let v = if r.negative {
        (r.value as i64).wrapping_neg()
    } else {
        r.value as i64
    };
    (v, r.end, false)
}

/// One `%d` conversion of `sscanf`: decimal, leading blanks skipped;
/// `None` when no digits match. The result is stored into an `int`, so an
/// out-of-range value is truncated like FreeBSD's scanf does.
pub(crate) fn scanf_int(s: &str) -> Option<(i32, usize)> {
    let r = scan(s, 10);
    if r.end == 0 {
        return None;
    }
    let v = if r.overflow {
        if r.negative {
            i64::MIN
        } else {
            i64::MAX
        }
    } else if r.negative {
        (r.value as i64).wrapping_neg()
    } else {
        r.value as i64
    };
    Some((v as i32, r.end))
}

/// `sscanf(s, fmt)` for formats made of `%d` conversions and literal
/// characters (the only kind bhyve uses on its command line). Returns the
/// converted values; fewer than the format asks for means a short match.
pub(crate) fn scanf_ints(s: &str, fmt: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut f = fmt;
    while !f.is_empty() {
        if let Some(after) = f.strip_prefix("%d") {
            match scanf_int(rest) {
                Some((v, used)) => {
                    out.push(v);
                    rest = &rest[used..];
                    f = after;
                }
                None => break,
            }
        } else {
            let c = f.chars().next().expect("non-empty");
            if !rest.starts_with(c) {
                break;
            }
            rest = &rest[c.len_utf8()..];
            f = &f[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_bases_and_ends() {
        assert_eq!(strtoul("42"), (42, 2, false));
        assert_eq!(strtoul("0x1f,"), (31, 4, false));
        assert_eq!(strtoul("010"), (8, 3, false));
        assert_eq!(strtoul(" 7-"), (7, 2, false));
        assert_eq!(strtoul("x"), (0, 0, false));
        assert_eq!(strtoul("0x"), (0, 1, false));
        assert_eq!(strtoul("-1"), (u64::MAX, 2, false));
        assert_eq!(strtoul("99999999999999999999999").0, u64::MAX);
    }

    #[test]
    fn strtol_range() {
        assert_eq!(strtol("-5"), (-5, 2, false));
        assert!(strtol("9223372036854775808").2);
        assert_eq!(strtol("-9223372036854775808"), (i64::MIN, 20, false));
    }

    #[test]
    fn scanf_matches_like_c() {
        assert_eq!(scanf_ints("1:2:3", "%d:%d:%d"), [1, 2, 3]);
        assert_eq!(scanf_ints("2:1", "%d:%d:%d"), [2, 1]);
        assert_eq!(scanf_ints("3x", "%d"), [3]);
        assert_eq!(scanf_ints("x", "%d"), Vec::<i32>::new());
        assert_eq!(scanf_ints(" +4: 5", "%d:%d"), [4, 5]);
        assert_eq!(scanf_ints("4 :5", "%d:%d"), [4]);
        assert_eq!(scanf_ints("pci1:2:3", "pci%d:%d:%d"), [1, 2, 3]);
        assert_eq!(scanf_ints("99999999999", "%d"), [(99999999999i64) as i32]);
    }
}
