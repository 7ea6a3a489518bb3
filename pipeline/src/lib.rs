//! vitrine's pipeline: specs, graph assembly and the `vitrine` command.

pub mod analytics;
pub mod bench;
pub mod cluster;
pub mod eval;
pub mod feed;
pub mod mesh;
pub mod offsets;
pub mod plan;
pub mod run;
pub mod spec;
pub mod supervise;
