//! Network backends for virtio-net (bhyve's `net_backends.c`): a
//! `backend=` value selects one. Linux has tap devices; bhyve's
//! FreeBSD-only backends get an error naming the Linux alternative.

mod tap;

use std::io;
use std::sync::Arc;

use bhyve_devices::virtio::net::NetBackend;

pub use tap::Tap;

/// Why a network backend could not be set up; the message is fit for
/// the user.
#[derive(Debug, thiserror::Error)]
pub enum NetBackendError {
    #[error("{0}")]
    Unsupported(String),
    #[error("invalid tap interface name '{0}' (1 to 15 characters, no '/', ':' or spaces)")]
    BadName(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

/// Opens the backend `spec` (a `backend=` value): any other name is a
/// Linux tap interface (bhyve's `tapN`, or `vmnetN`'s Linux equivalent).
pub fn open_net_backend(spec: &str) -> Result<Arc<dyn NetBackend>, NetBackendError> {
    let unsupported = |what: &str, instead: &str| {
        Err(NetBackendError::Unsupported(format!(
            "{what} backend '{spec}' does not exist on Linux; {instead}"
        )))
    };
    if spec.starts_with("netgraph") {
        return unsupported(
            "netgraph(4)",
            "use a tap device (backend=tapN or any tap name) on a Linux bridge",
        );
    }
    if spec.starts_with("vmnet") {
        return unsupported(
            "vmnet",
            "use a tap device (backend=tapN or any tap name); a bridged tap does what vmnet does",
        );
    }
    if spec.starts_with("netmap:") || spec.starts_with("vale") {
        return unsupported("netmap", "use a tap device (backend=tapN or any tap name)");
    }
    if spec == "slirp" || spec.starts_with("slirp,") {
        return Err(NetBackendError::Unsupported(
            "the slirp (user-mode networking) backend is not available in this build yet; \
             use a tap device (backend=tapN or any tap name)"
                .into(),
        ));
    }
    Ok(Arc::new(Tap::open(spec)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(spec: &str) -> String {
        match open_net_backend(spec) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{spec} opened"),
        }
    }

    #[test]
    fn freebsd_backends_name_the_linux_alternative() {
        assert!(err("netgraph")
            .contains("netgraph(4) backend 'netgraph' does not exist on Linux; use a tap"));
        assert!(err("vmnet0").contains("use a tap device"));
        assert!(err("netmap:em0").contains("use a tap device"));
        assert!(err("slirp").contains("slirp (user-mode networking) backend is not available"));
    }

    #[test]
    fn bad_tap_names_are_refused_before_any_system_call() {
        for bad in ["", "a/b", "sixteen-chars-xx", "a b", "a:b"] {
            assert!(err(bad).contains("invalid tap interface name"), "{bad}");
        }
    }
}
