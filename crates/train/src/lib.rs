//! # diffinv-train
//!
//! The trainer behind `cargo xtask train CONFIG` (the binary `diffinv-train`) and the quality
//! measurements of a trained prior ([`eval`]), shared with the tests of the shipped priors.

pub mod eval;
