//! PCI pass-through conf: the host device as `bus/slot/function`,
//! `pciB:S:F`, `pci0:B:S:F` or a `pptN` device name, then options.

use super::{pci_parse_legacy_config, split_first};
use crate::cnum::scanf_ints;
use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let (first, rest) = split_first(opt);
    if opt.starts_with("ppt") {
        node.set_value("pptdev", first)?;
    } else {
        // Tried in bhyve's order; each must convert all three numbers.
        let selector = ["pci0:%d:%d:%d", "pci%d:%d:%d", "%d/%d/%d"]
            .iter()
            .map(|fmt| scanf_ints(opt, fmt))
            .find(|v| v.len() == 3);
        let Some(bsf) = selector else {
            return Err(ConfigError::Invalid(format!(
                "passthru: invalid options \"{opt}\""
            )));
        };
        node.set_value("bus", &bsf[0].to_string())?;
        node.set_value("slot", &bsf[1].to_string())?;
        node.set_value("func", &bsf[2].to_string())?;
    }
    pci_parse_legacy_config(node, rest)
}
