//! NVMe conf: `ram=size_in_MiB[,opts]` for a RAM-backed namespace, else a
//! block device `path[,opts]`.

use super::block::blockif_legacy_config;
use super::{pci_parse_legacy_config, split_first};
use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    match opt.strip_prefix("ram=") {
        Some(ram) => {
            let (size, rest) = split_first(ram);
            node.set_value("ram", size)?;
            pci_parse_legacy_config(node, rest)
        }
        None => blockif_legacy_config(node, Some(opt)),
    }
}
