//! `memory.size` values, parsed as libvmmapi's `vm_parse_memsize` does.

use crate::cnum::{scan, strtoul};
use crate::ConfigError;

const MB: u64 = 1024 * 1024;

/// Parses a guest memory size. A bare number below 1 MiB counts in MiB
/// (bhyve's backward compatibility: `-m 1024` is 1 GiB); anything else is
/// an `expand_number(3)` size: a number with an optional `k`/`m`/`g`/`t`/
/// `p`/`e` suffix (either case, optionally followed by `b`).
///
/// Errors are bhyve's `invalid memsize '<value>'` (EX_USAGE).
pub fn parse_memsize(opt: &str) -> Result<u64, ConfigError> {
    let invalid = || ConfigError::Usage(format!("invalid memsize '{opt}'"));
    let (value, end, _) = strtoul(opt);
    if !opt.is_empty() && end == opt.len() {
        return Ok(if value < MB { value * MB } else { value });
    }
    expand_number(opt).ok_or_else(invalid)
}

/// FreeBSD's `expand_number(3)`.
fn expand_number(s: &str) -> Option<u64> {
    let r = scan(s, 0);
    // FreeBSD's strtoumax reports "no digits" (EINVAL) and overflow
    // (ERANGE) through errno, and expand_number fails on either.
    if r.end == 0 || r.overflow {
        return None;
    }
    let number = if r.negative {
        r.value.wrapping_neg()
    } else {
        r.value
    };
    let rest = &s[r.end..];
    let mut chars = rest.chars();
    let shift = match chars.next().map(|c| c.to_ascii_lowercase()) {
        None | Some('b') if chars.as_str().is_empty() => return Some(number),
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        Some('e') => 60,
        _ => return None,
    };
    match chars.as_str() {
        "" | "b" | "B" => {}
        _ => return None,
    }
    if number.leading_zeros() < shift {
        return None;
    }
    Some(number << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_memsize("256M").unwrap(), 256 * MB);
        assert_eq!(parse_memsize("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memsize("24g").unwrap(), 24 << 30);
        assert_eq!(parse_memsize("1024").unwrap(), 1 << 30);
        assert_eq!(parse_memsize("1024M").unwrap(), 1 << 30);
        assert_eq!(parse_memsize("2t").unwrap(), 2 << 40);
        assert_eq!(parse_memsize("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memsize("1GB").unwrap(), 1 << 30);
        // At least 1 MiB without a suffix: bytes.
        assert_eq!(parse_memsize("1048576").unwrap(), MB);
        assert_eq!(parse_memsize("0x100000").unwrap(), MB);
        assert_eq!(parse_memsize("0").unwrap(), 0);
    }

    #[test]
    fn invalid() {
        for bad in ["", "abc", "1X", "1Gx", "G", "16777216T", "1.5G"] {
            let e = parse_memsize(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::EX_USAGE, "{bad}");
            assert_eq!(e.to_string(), format!("invalid memsize '{bad}'"));
        }
    }
}
