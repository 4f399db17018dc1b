//! placeholder: filled in by the backends work
