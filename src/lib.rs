//! fairgate: a strictly fair, lock-free, `no_std` async semaphore.
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test, loom))]
extern crate std;

#[cfg(feature = "singleflight")]
pub mod singleflight;
