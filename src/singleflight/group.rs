//! [`Group`]: plain request coalescing with no cache (Go's `singleflight.Do`).

use std::boxed::Box;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::flight::{lock, BoxFut, Flight};

type GroupOut<T, E> = Result<T, Arc<E>>;
type Map<K, T, E> = Mutex<HashMap<K, Arc<Flight<GroupOut<T, E>>>>>;

/// Why [`Group::work`] failed.
pub enum GroupError<E> {
    /// The shared call returned this error; every waiter gets the same `Arc`.
    Failed(Arc<E>),
    /// The shared call panicked; the panic message.
    Panicked(Arc<str>),
}

impl<E> Clone for GroupError<E> {
    fn clone(&self) -> Self {
        match self {
            GroupError::Failed(e) => GroupError::Failed(Arc::clone(e)),
            GroupError::Panicked(m) => GroupError::Panicked(Arc::clone(m)),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            GroupError::Panicked(m) => f.debug_tuple("Panicked").field(m).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Failed(e) => write!(f, "{e}"),
            GroupError::Panicked(m) => write!(f, "coalesced call panicked: {m}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for GroupError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GroupError::Failed(e) => Some(&**e),
            GroupError::Panicked(_) => None,
        }
    }
}

/// Coalesces concurrent calls per key: while a call for a key is running,
/// further calls for that key wait for its result instead of starting their
/// own. Nothing is cached: once the call finishes, the next call runs again.
///
/// Unlike Go's `Do`, errors and panics reach every waiter as values, the
/// shared call is driven by whichever waiter is polled (a waiter that is
/// dropped or parked cannot strand the others), and dropping every waiter
/// cancels the call so the next caller starts afresh.
///
/// ```
/// use fairgate::singleflight::Group;
///
/// use futures::channel::oneshot;
///
/// let group: Group<&str, u32, ()> = Group::new();
/// let (tx, rx) = oneshot::channel();
/// futures::executor::block_on(async {
///     let a = group.work("k", move || async move { Ok(rx.await.unwrap()) });
///     // Joins `a`'s call while it is running: this closure never runs.
///     let b = group.work("k", || async { Ok(2) });
///     let answer = async { tx.send(1).unwrap() };
///     let (a, b, ()) = futures::join!(a, b, answer);
///     assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
/// });
/// ```
pub struct Group<K, T, E> {
    inner: Arc<GroupInner<K, T, E>>,
}

struct GroupInner<K, T, E> {
    map: Map<K, T, E>,
    next_id: AtomicU64,
}

impl<K, T, E> Clone for Group<K, T, E> {
    fn clone(&self) -> Self {
        Group {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, T, E> fmt::Debug for Group<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}

impl<K, T, E> Default for Group<K, T, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T, E> Group<K, T, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// An empty group.
    pub fn new() -> Self {
        Group {
            inner: Arc::new(GroupInner {
                map: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Runs `f` for `key`, or joins the call already running for it.
    ///
    /// `f` is only called if this caller starts the call; it runs inside the
    /// shared future (on its first poll), so its panics are caught too.
    pub async fn work<F, Fut>(&self, key: K, f: F) -> Result<T, GroupError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let waiter = {
            let mut map = lock(&self.inner.map);
            let joined = map.get(&key).and_then(|f| f.join());
            match joined {
                Some(w) => w,
                None => {
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let weak = Arc::downgrade(&self.inner);
                    let k = key.clone();
                    let fut: BoxFut<GroupOut<T, E>> = Box::pin(async move {
                        let out = f().await.map_err(Arc::new);
                        remove(&weak, &k, id);
                        out
                    });
                    let weak = Arc::downgrade(&self.inner);
                    let k = key.clone();
                    let hook = Box::new(move |_| remove(&weak, &k, id));
                    let flight = Flight::new(id, fut, hook);
                    let w = flight.join().expect("a new flight is never cancelled");
                    map.insert(key, flight);
                    w
                }
            }
        };
        match waiter.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(GroupError::Failed(e)),
            Err(msg) => Err(GroupError::Panicked(msg)),
        }
    }

    /// Number of calls currently running.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.map).len()
    }
}

fn remove<K: Hash + Eq, T, E>(weak: &Weak<GroupInner<K, T, E>>, key: &K, id: u64) {
    if let Some(inner) = weak.upgrade() {
        let mut map = lock(&inner.map);
        if map.get(key).is_some_and(|f| f.id() == id) {
            map.remove(key);
        }
    }
}
