//! Block-device conf shared by virtio-blk, AHCI ports and NVMe (bhyve's
//! `blockif_legacy_config`): `path[,option...]`.

use super::{pci_parse_legacy_config, split_first};
use crate::tree::Node;
use crate::ConfigError;

pub fn blockif_legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let (path, rest) = split_first(opt);
    node.set_value("path", path)?;
    pci_parse_legacy_config(node, rest)
}
