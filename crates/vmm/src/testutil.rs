//! Helpers of the crate's unit tests.

use bhyve_config::Config;

/// bhyve's default tree with `pairs` set in order.
pub(crate) fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::with_defaults();
    for (k, v) in pairs {
        c.set(k, v).unwrap();
    }
    c
}
