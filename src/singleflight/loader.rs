//! [`Loader`]: how the cache fetches a key's value from the backend.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// Fetches the value for a key from the backend. Registered once, up front,
/// so background refreshes need no caller-supplied closure.
///
/// Two closure forms are loaders:
///
/// * the simple form, key only: [`StaleCache::from_fn(|key| ...)`] or
///   [`from_fn`]`(|key| ...)`;
/// * the full form, any `Fn(&K, Option<Arc<V>>) -> impl Future<Output =
///   Result<V, E>>` closure passed to [`StaleCache::builder`]. `previous` is
///   the value currently cached, if any, for conditional revalidation or
///   merging. A closure passed this way must spell out both parameter types
///   (`|key: &String, _prev: Option<Arc<V>>|`): Rust infers a closure's
///   signature from a function's bound, not from a blanket trait impl.
///
/// The returned future must own what it uses (clone the key).
///
/// [`StaleCache::from_fn(|key| ...)`]: super::StaleCache::from_fn
/// [`StaleCache::builder`]: super::StaleCache::builder
pub trait Loader<K, V>: Send + Sync + 'static {
    /// The backend's error type. Shared with every waiter as `Arc<Error>`.
    type Error: Send + Sync + 'static;
    /// The future returned by [`Loader::load`].
    type Future: Future<Output = Result<V, Self::Error>> + Send + 'static;
    /// Starts one backend call for `key`.
    fn load(&self, key: &K, previous: Option<Arc<V>>) -> Self::Future;
}

impl<K, V, E, F, Fut> Loader<K, V> for F
where
    F: Fn(&K, Option<Arc<V>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    type Error = E;
    type Future = Fut;
    fn load(&self, key: &K, previous: Option<Arc<V>>) -> Fut {
        self(key, previous)
    }
}

/// A [`Loader`] made from a closure that takes only the key: the simple
/// form, for backends that need no `previous` value. Made by [`from_fn`] or
/// [`StaleCache::from_fn`](super::StaleCache::from_fn).
///
/// Because the closure's signature is spelled by `from_fn`'s own bound, the
/// closure needs no annotations beyond what its body requires (a key whose
/// methods it calls must have a known type: annotate `|key: &String|`, or name
/// the cache's key type elsewhere).
///
/// ```
/// use fairgate::singleflight::{from_fn, Source, StaleCache};
///
/// let cache = StaleCache::builder(from_fn(|id: &u32| {
///     let id = *id;
///     async move { Ok::<_, std::io::Error>(id * 2) }
/// }))
/// .build();
/// let hit = futures::executor::block_on(cache.get(&21)).unwrap();
/// assert_eq!((*hit.value, hit.source), (42, Source::Loaded));
/// ```
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

/// Wraps a key-only closure `Fn(&K) -> impl Future<Output = Result<V, E>>`
/// as a [`Loader`]. See [`FromFn`].
pub fn from_fn<K, V, E, F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    FromFn(f)
}

impl<K, V, E, F, Fut> Loader<K, V> for FromFn<F>
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
    E: Send + Sync + 'static,
{
    type Error = E;
    type Future = Fut;
    fn load(&self, key: &K, _previous: Option<Arc<V>>) -> Fut {
        (self.0)(key)
    }
}
