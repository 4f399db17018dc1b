//! amd_hostbridge: a hostbridge whose IDs say AMD. Its conf is ignored.

use crate::tree::Node;
use crate::ConfigError;

pub fn amd_legacy_config(node: &mut Node, _opt: Option<&str>) -> Result<(), ConfigError> {
    node.set_value("vendor", "0x1022")?;
    // Device ID made up by bhyve.
    node.set_value("devid", "0x7432")
}
