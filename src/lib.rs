//! twinops: policy-as-code for Azure IoT Hub twins.
//!
//! The library is the pipeline of `DESIGN.md`: [`load`] → [`validate`] →
//! [`compile`] (plan and apply come next), over [`fleet`]s read by [`hub`].
//! Pure stages never print or read the environment; the CLI layer
//! ([`cli`], [`config`], [`exit`], [`command`], [`render`]) does.

pub mod apply;
pub mod cli;
pub mod command;
pub mod compile;
pub mod config;
pub mod diag;
pub mod emulator;
pub mod exit;
pub mod fleet;
pub mod gitops;
pub mod hub;
pub mod load;
mod parallel;
pub mod plan;
pub mod query;
pub mod render;
pub mod schema;
pub mod status;
pub mod validate;
