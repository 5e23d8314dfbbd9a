//! The one integration test binary: a module per area.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failed expectation is a failed test"
)]

mod apply;
mod cli;
mod corpus;
mod fleets;
mod gitops;
mod rest;
mod runner;
