//! The semaphores compared, behind one adapter trait: fairgate, tokio, maitake-sync,
//! futures-intrusive (fair mode) and async-lock (unfair, for reference). The floor is in
//! `floor.rs`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

// ---------------------------------------------------------------------------------------------
// One adapter trait over every implementation. It returns each library's own future and output
// unchanged (no `Map`/`unwrap` wrappers, which callgrind showed are not always inlined): holding
// the output holds the permit, dropping it releases.
// ---------------------------------------------------------------------------------------------

pub trait Sem: Send + Sync + Sized + 'static {
    const NAME: &'static str;
    /// Strict FIFO (no barging)?
    const FAIR: bool;
    /// Has a multi-permit acquire?
    const HAS_MANY: bool = true;
    /// What the acquire future resolves to (`Result<Permit, _>` or the permit itself).
    type Guard<'a>: Send
    where
        Self: 'a;
    /// What `try_acquire` returns (`Result<Permit, _>` or `Option<Permit>`).
    type TryGuard<'a>
    where
        Self: 'a;
    type OwnedSem: Send + Sync + 'static;
    type Owned: Send + 'static;

    fn with_permits(permits: usize) -> Self;
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send;
    fn try_one(&self) -> Self::TryGuard<'_>;
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool;
    fn owned_with_permits(permits: usize) -> Self::OwnedSem;
    fn acquire_owned(sem: &Self::OwnedSem) -> impl Future<Output = Self::Owned> + Send + 'static;
}

impl Sem for fairgate::Semaphore {
    const NAME: &'static str = "fairgate";
    const FAIR: bool = true;
    type Guard<'a> = Result<fairgate::Permit<'a>, fairgate::AcquireError>;
    type TryGuard<'a> = Result<fairgate::Permit<'a>, fairgate::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<fairgate::OwnedPermit, fairgate::AcquireError>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire_many(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        Arc::clone(sem).acquire_owned()
    }
}

impl Sem for tokio::sync::Semaphore {
    const NAME: &'static str = "tokio";
    const FAIR: bool = true;
    type Guard<'a> = Result<tokio::sync::SemaphorePermit<'a>, tokio::sync::AcquireError>;
    type TryGuard<'a> = Result<tokio::sync::SemaphorePermit<'a>, tokio::sync::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire_many(n as u32)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        Arc::clone(sem).acquire_owned()
    }
}

pub type MaitakeSem = maitake_sync::Semaphore;

impl Sem for MaitakeSem {
    const NAME: &'static str = "maitake-sync";
    const FAIR: bool = true;
    type Guard<'a> = Result<maitake_sync::semaphore::Permit<'a>, maitake_sync::Closed>;
    type TryGuard<'a> =
        Result<maitake_sync::semaphore::Permit<'a>, maitake_sync::semaphore::TryAcquireError>;
    type OwnedSem = Arc<Self>;
    type Owned = Result<maitake_sync::semaphore::OwnedPermit, maitake_sync::Closed>;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire(1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire(1)
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_ok()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire_owned(1)
    }
}

/// futures-intrusive in fair mode (`is_fair = true`).
pub struct FiFair(futures_intrusive::sync::Semaphore);

impl Sem for FiFair {
    const NAME: &'static str = "futures-intrusive(fair)";
    const FAIR: bool = true;
    type Guard<'a> = futures_intrusive::sync::SemaphoreReleaser<'a>;
    type TryGuard<'a> = Option<futures_intrusive::sync::SemaphoreReleaser<'a>>;
    type OwnedSem = futures_intrusive::sync::SharedSemaphore;
    type Owned = futures_intrusive::sync::SharedSemaphoreReleaser;
    fn with_permits(permits: usize) -> Self {
        FiFair(futures_intrusive::sync::Semaphore::new(true, permits))
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.0.acquire(1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.0.acquire(n)
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.0.try_acquire(1)
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Self::OwnedSem {
        futures_intrusive::sync::SharedSemaphore::new(true, permits)
    }
    #[inline]
    fn acquire_owned(sem: &Self::OwnedSem) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire(1)
    }
}

impl Sem for async_lock::Semaphore {
    const NAME: &'static str = "async-lock(unfair)";
    const FAIR: bool = false;
    const HAS_MANY: bool = false;
    type Guard<'a> = async_lock::SemaphoreGuard<'a>;
    type TryGuard<'a> = Option<async_lock::SemaphoreGuard<'a>>;
    type OwnedSem = Arc<Self>;
    type Owned = async_lock::SemaphoreGuardArc;
    fn with_permits(permits: usize) -> Self {
        Self::new(permits)
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = Self::Guard<'_>> + Send {
        self.acquire()
    }
    fn acquire_n(&self, _n: usize) -> impl Future<Output = Self::Guard<'_>> + Send {
        // async-lock has no multi-permit acquire; callers check `HAS_MANY`.
        std::future::pending()
    }
    #[inline]
    fn try_one(&self) -> Self::TryGuard<'_> {
        self.try_acquire()
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Arc<Self> {
        Arc::new(Self::new(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Self>) -> impl Future<Output = Self::Owned> + Send + 'static {
        sem.acquire_arc()
    }
}

/// Invokes `$m!(Type, args..)` for every implementation, floor first. Callers need `Sem` in
/// scope; the shared code must be mounted as the crate's `common` module.
macro_rules! for_each_impl {
    ($m:ident!($($args:tt)*)) => {
        $m!($crate::common::Floor, $($args)*);
        $m!(fairgate::Semaphore, $($args)*);
        $m!(tokio::sync::Semaphore, $($args)*);
        $m!($crate::common::MaitakeSem, $($args)*);
        $m!($crate::common::FiFair, $($args)*);
        $m!(async_lock::Semaphore, $($args)*);
    };
}
pub(crate) use for_each_impl;

/// Polls `fut` once with a no-op waker; it must be ready.
#[inline(always)]
pub fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("uncontended acquire was not ready on its first poll"),
    }
}
