//! Network conf shared by virtio-net and e1000 (bhyve's
//! `netbe_legacy_config`): `backend[,mac=..][,mtu=..]...`.

use super::{pci_parse_legacy_config, split_first};
use crate::tree::Node;
use crate::ConfigError;

pub fn netbe_legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let (backend, rest) = split_first(opt);
    node.set_value("backend", backend)?;
    pci_parse_legacy_config(node, rest)
}
