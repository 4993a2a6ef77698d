//! The floor: one CAS-loop acquire and one `fetch_add` release on a bare `AtomicUsize`, the
//! cheapest thing that can count permits. It is the reference every other implementation is
//! compared with; it has no queue and is not fair.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};

use super::peers::Sem;

/// A bare counter. Acquire = CAS loop decrement, release = `fetch_add`. Its "waiting" is a
/// busy re-poll (wake itself and return `Pending`): no queue, no fairness.
pub struct Floor(AtomicUsize);

impl Floor {
    #[inline]
    fn try_take(&self, n: usize) -> bool {
        let mut cur = self.0.load(Relaxed);
        loop {
            if cur < n {
                return false;
            }
            match self.0.compare_exchange_weak(cur, cur - n, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

pub struct FloorPermit<'a>(&'a AtomicUsize, usize);
impl Drop for FloorPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_add(self.1, Release);
    }
}

pub struct FloorAcquire<'a>(&'a Floor, usize);
impl<'a> Future for FloorAcquire<'a> {
    type Output = FloorPermit<'a>;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FloorPermit<'a>> {
        if self.0.try_take(self.1) {
            Poll::Ready(FloorPermit(&self.0 .0, self.1))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

pub struct FloorOwnedPermit(Arc<Floor>, usize);
impl Drop for FloorOwnedPermit {
    #[inline]
    fn drop(&mut self) {
        self.0 .0.fetch_add(self.1, Release);
    }
}

pub struct FloorAcquireOwned(Arc<Floor>);
impl Future for FloorAcquireOwned {
    type Output = FloorOwnedPermit;
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FloorOwnedPermit> {
        if self.0.try_take(1) {
            Poll::Ready(FloorOwnedPermit(Arc::clone(&self.0), 1))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Sem for Floor {
    const NAME: &'static str = "floor";
    const FAIR: bool = false;
    type Guard<'a> = FloorPermit<'a>;
    type TryGuard<'a> = Option<FloorPermit<'a>>;
    type OwnedSem = Arc<Floor>;
    type Owned = FloorOwnedPermit;
    fn with_permits(permits: usize) -> Self {
        Floor(AtomicUsize::new(permits))
    }
    #[inline]
    fn acquire_one(&self) -> impl Future<Output = FloorPermit<'_>> + Send {
        FloorAcquire(self, 1)
    }
    #[inline]
    fn acquire_n(&self, n: usize) -> impl Future<Output = FloorPermit<'_>> + Send {
        FloorAcquire(self, n)
    }
    #[inline]
    fn try_one(&self) -> Option<FloorPermit<'_>> {
        self.try_take(1).then(|| FloorPermit(&self.0, 1))
    }
    fn try_ok(guard: &Self::TryGuard<'_>) -> bool {
        guard.is_some()
    }
    fn owned_with_permits(permits: usize) -> Arc<Floor> {
        Arc::new(Floor::with_permits(permits))
    }
    #[inline]
    fn acquire_owned(sem: &Arc<Floor>) -> impl Future<Output = FloorOwnedPermit> + Send + 'static {
        FloorAcquireOwned(Arc::clone(sem))
    }
}
