//! Sizes of each implementation's own types (no adapter wrappers), printed by both benches.

use std::sync::Arc;

use super::MaitakeSem;

pub struct Sizes {
    pub name: &'static str,
    pub sem: usize,
    pub fut: usize,
    pub permit: usize,
    pub owned_fut: usize,
    pub owned_permit: usize,
}

/// Sizes of each implementation's own types (no adapter wrappers).
pub fn sizes() -> Vec<Sizes> {
    use std::mem::{size_of, size_of_val};
    let mut out = Vec::new();
    {
        let s = Arc::new(fairgate::Semaphore::new(1));
        out.push(Sizes {
            name: "fairgate",
            sem: size_of::<fairgate::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<fairgate::Permit<'_>>(),
            owned_fut: size_of_val(&Arc::clone(&s).acquire_owned()),
            owned_permit: size_of::<fairgate::OwnedPermit>(),
        });
    }
    {
        let s = Arc::new(tokio::sync::Semaphore::new(1));
        out.push(Sizes {
            name: "tokio",
            sem: size_of::<tokio::sync::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<tokio::sync::SemaphorePermit<'_>>(),
            owned_fut: size_of_val(&Arc::clone(&s).acquire_owned()),
            owned_permit: size_of::<tokio::sync::OwnedSemaphorePermit>(),
        });
    }
    {
        let s = Arc::new(MaitakeSem::new(1));
        out.push(Sizes {
            name: "maitake-sync",
            sem: size_of::<MaitakeSem>(),
            fut: size_of_val(&s.acquire(1)),
            permit: size_of::<maitake_sync::semaphore::Permit<'_>>(),
            owned_fut: size_of_val(&s.acquire_owned(1)),
            owned_permit: size_of::<maitake_sync::semaphore::OwnedPermit>(),
        });
    }
    {
        let s = futures_intrusive::sync::Semaphore::new(true, 1);
        let sh = futures_intrusive::sync::SharedSemaphore::new(true, 1);
        out.push(Sizes {
            name: "futures-intrusive(fair)",
            sem: size_of::<futures_intrusive::sync::Semaphore>(),
            fut: size_of_val(&s.acquire(1)),
            permit: size_of::<futures_intrusive::sync::SemaphoreReleaser<'_>>(),
            owned_fut: size_of_val(&sh.acquire(1)),
            owned_permit: size_of::<futures_intrusive::sync::SharedSemaphoreReleaser>(),
        });
    }
    {
        let s = Arc::new(async_lock::Semaphore::new(1));
        out.push(Sizes {
            name: "async-lock(unfair)",
            sem: size_of::<async_lock::Semaphore>(),
            fut: size_of_val(&s.acquire()),
            permit: size_of::<async_lock::SemaphoreGuard<'_>>(),
            owned_fut: size_of_val(&s.acquire_arc()),
            owned_permit: size_of::<async_lock::SemaphoreGuardArc>(),
        });
    }
    out
}
