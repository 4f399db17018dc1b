//! AHCI conf: `ahci` takes a list of ports, each `hd:path[,opts]` or
//! `cd:path[,opts]`; `ahci-hd`/`ahci-cd` take one `path[,opts]` for port 0.
//! Ports live under `port.N` with `type` plus the block-device variables.

use super::block::blockif_legacy_config;
use crate::tree::Node;
use crate::ConfigError;

/// AHCI ports per controller.
const MAX_PORTS: usize = 32;

fn port_config(
    ports: &mut Node,
    port: usize,
    kind: &str,
    opt: Option<&str>,
) -> Result<(), ConfigError> {
    let node = ports.create_node(&port.to_string())?;
    node.set_value("type", kind)?;
    blockif_legacy_config(node, opt)
}

/// Position of the next port prefix (`,hd:` or `,cd:`) in `s`.
fn next_port(s: &str) -> Option<usize> {
    match (s.find(",hd:"), s.find(",cd:")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let ports = node.create_node("port")?;
    let mut rest = Some(opt);
    let mut port = 0;
    while let Some(s) = rest {
        if port >= MAX_PORTS {
            break;
        }
        let (kind, s) = if let Some(s) = s.strip_prefix("hd:") {
            (Some("hd"), s)
        } else if let Some(s) = s.strip_prefix("cd:") {
            (Some("cd"), s)
        } else {
            (None, s)
        };
        let (this, next) = match next_port(s) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        rest = next;
        // An empty item still uses up a port number, as in bhyve.
        if !this.is_empty() {
            let Some(kind) = kind else {
                return Err(ConfigError::Invalid(format!(
                    "Missing or invalid type for port {port}: \"{this}\""
                )));
            };
            port_config(ports, port, kind, Some(this))?;
        }
        port += 1;
    }
    Ok(())
}

pub fn hd_legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    port_config(node.create_node("port")?, 0, "hd", opt)
}

pub fn cd_legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    port_config(node.create_node("port")?, 0, "cd", opt)
}
