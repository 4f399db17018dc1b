//! placeholder: filled in by the vmm work
