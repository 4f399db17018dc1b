//! virtio-9p conf: exactly one `sharename=/path` plus boolean flags (`ro`).

use crate::tree::Node;
use crate::ConfigError;

pub fn legacy_config(node: &mut Node, opt: Option<&str>) -> Result<(), ConfigError> {
    let Some(opt) = opt else {
        return Ok(());
    };
    let mut have_share = false;
    for item in opt.split(',') {
        match item.split_once('=') {
            Some((share, path)) => {
                if have_share {
                    return Err(ConfigError::Invalid(
                        "virtio-9p: more than one share name given".into(),
                    ));
                }
                have_share = true;
                node.set_value("sharename", share)?;
                node.set_value("path", path)?;
            }
            None => node.set_value(item, "true")?,
        }
    }
    Ok(())
}
