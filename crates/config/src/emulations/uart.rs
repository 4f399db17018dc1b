//! PCI 16550 conf: the whole text is the TTY backend (`stdio`, a device).

use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    match opt {
        Some(path) => node.set_value("path", path),
        None => Ok(()),
    }
}
