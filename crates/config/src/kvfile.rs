//! `-o var=value` and `-k file` (bhyve's `parse_config_option` and
//! `parse_simple_config_file`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::{Config, ConfigError};

/// Applies one `var=value` assignment. Returns `Ok(false)` when the text is
/// not an assignment (no `=`, or nothing after it), which each caller
/// reports in its own way.
pub fn parse_config_option(cfg: &mut Config, option: &str) -> Result<bool, ConfigError> {
    match option.split_once('=') {
        Some((path, value)) if !value.is_empty() => {
            cfg.set(path, value)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Applies `-o var=value`; a malformed option is a usage error.
pub fn apply_option(cfg: &mut Config, option: &str) -> Result<(), ConfigError> {
    if parse_config_option(cfg, option)? {
        Ok(())
    } else {
        Err(ConfigError::Usage(format!(
            "invalid configuration option '{option}'"
        )))
    }
}

/// Applies a `-k` file: one `var=value` per line; empty lines and lines
/// starting with `#` are skipped. Errors exit with 4, as in bhyve.
pub fn parse_simple_config_file(cfg: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "Failed to open configuration file {}: {}",
            path.display(),
            io_error_text(&e)
        ))
    })?;
    parse_config_lines(cfg, &path.display().to_string(), file)
}

/// The text `err(3)` prints for an I/O error: strerror without Rust's
/// " (os error N)" suffix.
fn io_error_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Longest accepted line and file: `-k` input is host input, so a runaway
/// file (`-k /dev/zero`) must end in an error, not in exhausted memory.
const MAX_LINE: usize = 64 * 1024;
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// The line loop of [`parse_simple_config_file`], over any reader.
pub fn parse_config_lines(
    cfg: &mut Config,
    name: &str,
    input: impl Read,
) -> Result<(), ConfigError> {
    let mut reader = BufReader::new(input.take(MAX_FILE + 1));
    let mut buf = Vec::new();
    let mut lineno = 0u32;
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| {
                ConfigError::Invalid(format!("{name}: read error: {}", io_error_text(&e)))
            })?;
        if n == 0 {
            return Ok(());
        }
        lineno = lineno.saturating_add(1);
        total += n as u64;
        if total > MAX_FILE {
            return Err(ConfigError::Invalid(format!(
                "{name}: file larger than {MAX_FILE} bytes"
            )));
        }
        if buf.len() > MAX_LINE {
            return Err(ConfigError::Invalid(format!(
                "{name} line {lineno}: line longer than {MAX_LINE} bytes"
            )));
        }
        if buf[0] == b'#' || buf[0] == b'\n' {
            continue;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf);
        if !parse_config_option(cfg, &line)? {
            return Err(ConfigError::Invalid(format!(
                "{name} line {lineno}: invalid config option '{line}'"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_input_is_an_error() {
        let mut cfg = Config::new();
        let long = std::io::repeat(b'a').take(MAX_LINE as u64 * 4);
        let e = parse_config_lines(&mut cfg, "f", long).unwrap_err();
        assert!(e.to_string().contains("line 1: line longer"), "{e}");
        assert_eq!(e.exit_code(), crate::EXIT_ERROR);
        let many = std::io::repeat(b'\n').take(MAX_FILE + 10);
        let e = parse_config_lines(&mut cfg, "f", many).unwrap_err();
        assert!(e.to_string().contains("file larger"), "{e}");
    }

    #[test]
    fn options() {
        let mut cfg = Config::new();
        apply_option(&mut cfg, "pci.0.3.0.path=/a=b").unwrap();
        assert_eq!(cfg.get("pci.0.3.0.path").unwrap(), "/a=b");
        for bad in ["novalue", "x=", "="] {
            let e = apply_option(&mut cfg, bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::EX_USAGE);
            assert_eq!(
                e.to_string(),
                format!("invalid configuration option '{bad}'")
            );
        }
        // A variable cannot become a node: exit 4 like bhyve's errx(4).
        let e = apply_option(&mut cfg, "pci.0.3.0.path.x=1").unwrap_err();
        assert_eq!(e.exit_code(), 4);
    }

    #[test]
    fn file_lines() {
        let mut cfg = Config::new();
        let text = "# comment\n\nname=vm1\ncpus=2\nmemory.size=1G";
        parse_config_lines(&mut cfg, "f.conf", text.as_bytes()).unwrap();
        assert_eq!(cfg.dump(), "name=vm1\ncpus=2\nmemory.size=1G\n");
        let e = parse_config_lines(&mut cfg, "f.conf", "a=1\n  # x\n".as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.to_string(),
            "f.conf line 2: invalid config option '  # x'"
        );
        let e = parse_config_lines(&mut cfg, "f.conf", "a b c\n".as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf line 1: invalid config option 'a b c'"
        );
    }

    #[test]
    fn missing_file() {
        let mut cfg = Config::new();
        let e =
            parse_simple_config_file(&mut cfg, Path::new("/nonexistent/bhyve.conf")).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.to_string(),
            "Failed to open configuration file /nonexistent/bhyve.conf: No such file or directory"
        );
    }
}
