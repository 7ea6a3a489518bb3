//! vitrine's pipeline: specs, graph assembly and the `vitrine` command.

pub mod run;
pub mod spec;
