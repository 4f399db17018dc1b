//! Text from SeaBIOS's serial console (sercon, `etc/sercon-port`), which
//! mirrors the VGA text screen on a serial port with ANSI cursor moves.
//! What option ROMs such as iPXE print reaches COM1 this way.

/// Whether `want`'s characters appear in `line` in order, spread over at
/// most three times its length. sercon's rendering depends on timing (it
/// updates the serial side lazily, from int 10h and from its periodic
/// check): it has interleaved repeated characters and second copies of
/// cursor moves into text, `net0: 10.77.2.59/` coming out as
/// `nee␛[22;03Ht0: 100␛[22␛[22;09H;09H.77.2.59/`, more often on a loaded
/// host. In every run seen it only inserted, so the text is still there,
/// in order.
pub fn garbled_contains(line: &str, want: &str) -> bool {
    let line: Vec<char> = line.chars().collect();
    let want: Vec<char> = want.chars().collect();
    if want.is_empty() {
        return true;
    }
    (0..line.len()).any(|start| {
        let mut w = 0;
        for &c in line[start..].iter().take(want.len() * 3) {
            if c == want[w] {
                w += 1;
                if w == want.len() {
                    return true;
                }
            }
        }
        false
    })
}

/// `text` without ANSI escape sequences (ESC, an optional `[`, parameter
/// bytes, a final letter).
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
        }
        for p in chars.by_ref() {
            if p.is_ascii_alphabetic() {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_stripped_from_the_console() {
        assert_eq!(
            strip_escapes("Configuring (net0 58:9c:fc:91:41\x1b[21;33H:cd)... ok\x1b[0m"),
            "Configuring (net0 58:9c:fc:91:41:cd)... ok"
        );
        assert_eq!(strip_escapes("a\x1bcb"), "ab");
    }

    #[test]
    fn garbled_console_text_is_still_found_in_order() {
        // As a CI run's sercon rendered iPXE's address line.
        let line =
            strip_escapes("nee\x1b[22;03Ht0: 100\x1b[22\x1b[22;09H;09H.77.2.59/255.255.255.00");
        assert!(garbled_contains(&line, "net0: 10.77.2.59/"), "{line}");
        assert!(!garbled_contains(&line, "net0: 10.77.2.58/"));
        assert!(!garbled_contains(&line, "net0: 10.77.2.59/x"));
        // Not when the characters are spread too far apart.
        assert!(!garbled_contains(&format!("ab{}c", " ".repeat(20)), "abc"));
        assert!(garbled_contains("iPXE (PCI 00:03.0)", "iPXE (PCI 00:03.0)"));
    }
}
