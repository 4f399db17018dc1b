//! placeholder: filled in by the testguests work
