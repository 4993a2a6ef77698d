//! The future [`StaleCache::get`] returns, and the state a waiting caller keeps.

use std::boxed::Box;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use super::cache::Inner;
use super::flight::Waiter;
use super::hit::GetResult;
use super::loader::Loader;
use super::shard::Out;
use super::time::Nanos;

/// The future returned by [`StaleCache::get`]. Hand-written rather than an
/// `async fn` so that the first poll runs the decision table and returns a
/// hit straight into the poll's result (no generator state, no intermediate
/// enum to move it through).
///
/// Three words, all plain fields: a caller moves the future at least once
/// before polling it (`now_or_never`, `pin!`, `.await` into a state machine),
/// and LLVM then reads the fields one by one. A bigger future, or a two-word
/// enum, was copied with wide loads spanning the constructor's separate
/// stores, which the CPU cannot forward (~15–25 ns per hit).
pub(super) struct Get<'a, K, V, L: Loader<K, V>> {
    pub(super) inner: &'a Arc<Inner<K, V, L>>,
    pub(super) key: &'a K,
    /// Set once this caller waits on a flight. Boxed: only the (already
    /// allocating) waiting path needs this state.
    pub(super) wait: Option<Box<Wait<V, L::Error>>>,
}

/// What a caller that waits on a flight keeps between polls.
pub(super) struct Wait<V, E> {
    pub(super) waiter: Waiter<Out<V, E>>,
    /// This caller started the flight (`Loaded`, not `Joined`).
    pub(super) leader: bool,
    /// The stale value (and when it was stored) to serve if the refresh fails.
    pub(super) fallback: Option<(Arc<V>, Nanos)>,
}

impl<K, V, L> Future for Get<'_, K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    type Output = GetResult<V, L::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Neither branch hands out a pointer into `this` (only into the
        // box, or to a local): if the future's address escaped, LLVM would
        // copy the whole future with wide loads wherever the caller moved it,
        // instead of reading its three fields into registers.
        if let Some(w) = this.wait.as_deref_mut() {
            let r = this.inner.poll_wait(w, cx);
            if r.is_ready() {
                // Done: a later poll decides afresh.
                this.wait = None;
            }
            return r;
        }
        let mut wait = None;
        let r = this.inner.decide(this.key, &mut wait, cx);
        if wait.is_some() {
            this.wait = wait;
        }
        r
    }
}

/// The slow path's outcome, produced under the shard lock.
pub(super) enum Decision<V, E> {
    Ready(GetResult<V, E>),
    Wait {
        waiter: Waiter<Out<V, E>>,
        leader: bool,
        fallback: Option<(Arc<V>, Nanos)>,
    },
}

impl<V, E> Decision<V, E> {
    pub(super) fn wait(
        waiter: Waiter<Out<V, E>>,
        leader: bool,
        fallback: Option<(Arc<V>, Nanos)>,
    ) -> Self {
        Decision::Wait {
            waiter,
            leader,
            fallback,
        }
    }
}

impl<K, V, L> Inner<K, V, L>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    L: Loader<K, V>,
{
    /// Polls the flight this caller waits on; on completion turns its
    /// output into the caller's result (the caller then drops `w`).
    pub(super) fn poll_wait(
        &self,
        w: &mut Wait<V, L::Error>,
        cx: &mut Context<'_>,
    ) -> Poll<GetResult<V, L::Error>> {
        let out = ready!(Pin::new(&mut w.waiter).poll(cx));
        Poll::Ready(self.settle(out, w.leader, w.fallback.take()))
    }

    #[cold]
    pub(super) fn spawn_waiter(&self, bg: Waiter<Out<V, L::Error>>) {
        if let Some(sp) = &self.spawner {
            sp.spawn(Box::pin(async move {
                let _ = bg.await;
            }));
        }
    }
}
