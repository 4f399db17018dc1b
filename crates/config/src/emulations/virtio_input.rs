//! virtio-input conf: the evdev device (`/dev/input/eventX`), required.

use super::{pci_parse_legacy_config, split_first};
use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    // bhyve fails the slot without a message when the device is missing.
    let Some(opt) = opt else {
        return Err(ConfigError::Invalid(
            "virtio-input: missing input device path".into(),
        ));
    };
    let (path, rest) = split_first(opt);
    node.set_value("path", path)?;
    pci_parse_legacy_config(node, rest)
}
