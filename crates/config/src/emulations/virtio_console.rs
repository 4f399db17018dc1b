//! virtio-console conf: `name=/path/to/socket` per port, stored as
//! `port.N.name` / `port.N.path` with N counting from 0.

use crate::tree::Node;
use crate::ConfigError;

/// Ports per console device (bhyve(8): "A maximum of 16 ports").
const VTCON_MAXPORTS: usize = 16;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let ports = node.create_node("port")?;
    for (port, item) in opt.split(',').enumerate() {
        let Some((name, path)) = item.split_once('=') else {
            return Err(ConfigError::Invalid(format!(
                "vtcon: port {item} requires a path"
            )));
        };
        if port >= VTCON_MAXPORTS {
            return Err(ConfigError::Invalid("vtcon: too many ports".into()));
        }
        let p = ports.create_node(&port.to_string())?;
        p.set_value("name", name)?;
        p.set_value("path", path)?;
    }
    Ok(())
}
