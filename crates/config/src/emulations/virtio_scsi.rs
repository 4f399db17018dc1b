//! virtio-scsi conf: the CTL device (`/dev/cam/ctl[pp.vp]`) then options
//! such as `iid=`.

use super::{pci_parse_legacy_config, split_first};
use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let (dev, rest) = split_first(opt);
    node.set_value("dev", dev)?;
    pci_parse_legacy_config(node, rest)
}
