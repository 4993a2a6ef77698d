//! Admission control built on the semaphore's public API (work in progress on a branch).
