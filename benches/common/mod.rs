//! Code shared by the `fairness` and `semaphore` benches: the implementations compared (the
//! peers and the floor, behind the `Sem` adapter trait), their sizes, and the contended runs.
//!
//! Each bench mounts this folder as its `common` module (`#[path = ...] mod common;`): the
//! `for_each_impl!` macro names the implementations through `$crate::common`.
#![allow(clippy::type_complexity)]

mod floor;
mod peers;
pub mod runner;
mod sizes;

pub use floor::Floor;
pub(crate) use peers::for_each_impl;
pub use peers::{poll_once, FiFair, MaitakeSem, Sem};
pub use sizes::sizes;
