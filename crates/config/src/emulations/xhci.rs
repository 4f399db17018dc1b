//! xHCI conf: one USB device per comma-separated item (`tablet`), stored
//! as `slot.N.device` with N counting from 1; `device=opt` passes one
//! option to the device.

use super::pci_parse_legacy_config;
use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let slots = node.create_node("slot")?;
    for (i, item) in opt.split(',').enumerate() {
        let (device, conf) = match item.split_once('=') {
            Some((d, c)) => (d, Some(c)),
            None => (item, None),
        };
        let slot = slots.create_node(&(i + 1).to_string())?;
        slot.set_value("device", device)?;
        if let Some(conf) = conf.filter(|c| !c.is_empty()) {
            pci_parse_legacy_config(slot, Some(conf))?;
        }
    }
    Ok(())
}
