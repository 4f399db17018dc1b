//! Building and running a VM from a Config.
