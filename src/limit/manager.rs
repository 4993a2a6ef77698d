//! The keyed manager: one `Limiter` per key. The rules are documented on [`LimiterManager`].

#[path = "manager_builder.rs"]
mod builder;
#[path = "manager_report.rs"]
mod report;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::vec::Vec;

pub use builder::LimiterManagerBuilder;
pub use report::{KeySnapshot, KeyState, ManagerError, Update};

use crate::limit::{Limiter, LimiterConfig, Mode, Observer};
use crate::sync::{AtomicUsize, Ordering::Relaxed};

type ConfigFor<K> = Arc<dyn Fn(&K) -> LimiterConfig + Send + Sync>;

/// One [`Limiter`] per key (channel, tenant, peer), cached by configuration, with draining on
/// change and a bounded, evicting key set. A cheap `Clone` handle: clones share everything.
///
/// # Where configurations come from
/// A manager is built with a **config provider**, `Fn(&K) -> LimiterConfig`, called (outside
/// any lock) the first time a key is seen, and again only after the key was evicted or
/// removed. Configurations change through [`update`](LimiterManager::update) (push: "tenant
/// 7 now gets 16") or [`limiter_with`](LimiterManager::limiter_with) (pull: every request
/// brings its channel's current configuration and the limiter is looked up by config
/// equality, which costs one comparison when nothing changed). A configuration set by
/// `update` lasts as long as the key does: once an idle key is evicted, the provider decides
/// again, so a provider that reads the same source as `update` writes to is the robust setup.
///
/// # Changing a key's configuration
/// * Equal configuration: nothing happens ([`Update::Unchanged`]).
/// * Only the capacity changed, both old and new positive: the limiter is resized in place
///   ([`Limiter::set_capacity`]); work in flight keeps its permits and counts against the new
///   capacity ([`Update::Resized`]).
/// * Anything else (mode, queue settings, name, or a change to or from capacity 0): a new
///   limiter takes over the key for new requests, and the old one **drains**: its permits
///   return to it (they hold it alive), its queued waiters are served by it, and it is
///   reported as [`KeyState::Draining`] by [`snapshot`](LimiterManager::snapshot) until it is
///   idle, then never again. Nothing in flight is orphaned or counted twice
///   ([`Update::Replaced`]). While it drains, the key admits up to the old limiter's
///   in-flight work plus the new capacity.
/// * Capacity 0 is a passthrough. A change to 0 (or to soft mode) is not "admit nobody": the
///   key stops limiting, and the old limiter is switched to passthrough too
///   (`set_capacity(0)`, which admits its queued waiters at once) while it drains. A change
///   back to `n` starts limiting again with a fresh limiter; the passthrough work still in
///   flight drains on the old one.
///
/// # Bounded keys
/// With [`max_keys`](LimiterManagerBuilder::max_keys), a new key beyond the bound evicts the
/// least recently used **idle** key (recency is counted in key creations: keys last used
/// between the same two creations tie): no permits out, no waiters, and no request of the keyed
/// tower layer in progress (the layer holds a lease on the key's entry from its lookup until
/// the response is done). A key that is busy is never evicted; if every key is busy, the new
/// key gets [`ManagerError::TooManyKeys`] (the keyed layer answers with a
/// [`Rejected`](crate::limit::Rejected) of reason `TooManyKeys`). Finding the victim scans the
/// keys: O(`max_keys`) per new key once the bound is reached.
///
/// # Cost of a lookup
/// A lookup of a known key takes the read side of an `RwLock`, hashes the key and clones an
/// `Arc`; recency is two relaxed atomic accesses that write only when the key's stamp is
/// stale. Creating, replacing, removing and evicting take the write side.
///
/// A [`Limiter`] handle returned by the manager stays usable forever, but after an update
/// that replaces it, a removal or an eviction it is no longer the key's limiter: look the
/// limiter up per request (it is cheap) rather than caching handles.
///
/// # Example
/// ```
/// use fairgate::limit::{KeyState, LimiterConfig, LimiterManager, Update};
///
/// let manager = LimiterManager::builder("channels", |channel: &String| {
///     LimiterConfig::builder(channel.as_str()).capacity(2).config().unwrap()
/// })
/// .max_keys(1000)
/// .build()?;
///
/// let gpt = manager.limiter(&"gpt".to_string())?;
/// let held = gpt.try_acquire().unwrap();
///
/// // A capacity-only change resizes in place: the permit in flight still counts.
/// let wider = LimiterConfig::builder("gpt").capacity(4).config().unwrap();
/// assert_eq!(manager.update("gpt".into(), wider)?, Update::Resized { from: 2, to: 4 });
/// assert_eq!(manager.limiter(&"gpt".to_string())?.in_flight(), 1);
///
/// // Any other change swaps in a new limiter; the old one drains.
/// let queued = LimiterConfig::builder("gpt").capacity(4).max_queue(Some(8)).config().unwrap();
/// assert_eq!(manager.update("gpt".into(), queued)?, Update::Replaced);
/// let states: Vec<_> = manager.snapshot().into_iter().map(|s| s.state).collect();
/// assert_eq!(states, [KeyState::Active, KeyState::Draining]);
/// drop(held); // the old limiter is idle now: it is no longer reported
/// assert_eq!(manager.snapshot().len(), 1);
/// # Ok::<(), fairgate::limit::ManagerError>(())
/// ```
pub struct LimiterManager<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    /// Names the manager's own rejections (`TooManyKeys`).
    name: Arc<str>,
    config_for: ConfigFor<K>,
    max_keys: Option<usize>,
    observer: Option<Arc<dyn Observer>>,
    keys: RwLock<HashMap<K, Slot>>,
    /// Replaced or removed limiters, kept (and reported) while something still uses them.
    /// Lock order: `keys` before `draining`.
    draining: Mutex<Vec<(K, Lease)>>,
    /// Ticks once per created key: the recency stamp of idle-key eviction.
    clock: AtomicUsize,
}

/// A key's current configuration and limiter.
struct Slot {
    config: LimiterConfig,
    entry: Lease,
}

/// A key's limiter with its recency stamp, shared by the map and by every request of the
/// keyed layer between its lookup and the end of its response: a lease count above one marks
/// the key busy, so eviction cannot pull the limiter out from under a request that has looked
/// it up but not yet queued.
#[derive(Clone)]
pub(crate) struct Lease(Arc<Entry>);

struct Entry {
    limiter: Limiter,
    last_used: AtomicUsize,
}

impl Lease {
    pub(crate) fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }

    /// Nobody but its owner (the map, or the draining list) holds this lease, and the
    /// limiter has no permit out and no waiter.
    fn is_idle(&self) -> bool {
        Arc::strong_count(&self.0) == 1
            && self.0.limiter.in_flight() == 0
            && self.0.limiter.waiting() == 0
    }
}

impl<K> Clone for LimiterManager<K> {
    fn clone(&self) -> Self {
        LimiterManager {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for LimiterManager<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterManager")
            .field("name", &self.shared.name)
            .field("max_keys", &self.shared.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K> LimiterManager<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// An unbounded manager called `name` (it names the manager's own rejections) whose keys
    /// get their first configuration from `config_for`.
    ///
    /// ```
    /// use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let manager = LimiterManager::new("peers", |peer: &std::net::IpAddr| {
    ///     LimiterConfig::builder(peer.to_string()).capacity(8).config().unwrap()
    /// });
    /// let limiter = manager.limiter(&[127, 0, 0, 1].into()).unwrap();
    /// assert_eq!((limiter.name(), limiter.capacity()), ("127.0.0.1", 8));
    /// ```
    pub fn new(
        name: impl Into<Arc<str>>,
        config_for: impl Fn(&K) -> LimiterConfig + Send + Sync + 'static,
    ) -> Self {
        Self::builder(name, config_for)
            .build()
            .expect("an unbounded manager has no invalid setting")
    }

    /// A builder for a manager with a `max_keys` bound or an observer.
    ///
    /// ```
    /// use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let manager = LimiterManager::builder("tenants", |_: &u32| {
    ///     LimiterConfig::builder("tenant").capacity(4).config().unwrap()
    /// })
    /// .max_keys(2)
    /// .build()?;
    /// assert_eq!(manager.name(), "tenants");
    /// # Ok::<(), fairgate::limit::ManagerError>(())
    /// ```
    pub fn builder(
        name: impl Into<Arc<str>>,
        config_for: impl Fn(&K) -> LimiterConfig + Send + Sync + 'static,
    ) -> LimiterManagerBuilder<K> {
        LimiterManagerBuilder::new(name.into(), config_for)
    }

    /// The manager's name.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// assert_eq!(m.name(), "peers");
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound on keys, if any.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// assert_eq!(m.max_keys(), None);
    /// ```
    pub fn max_keys(&self) -> Option<usize> {
        self.shared.max_keys
    }

    /// The key's limiter, created from the config provider if the key is new.
    ///
    /// # Errors
    /// [`ManagerError::TooManyKeys`] if the key is new, `max_keys` is reached and no key is
    /// idle.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").capacity(1).config().unwrap());
    /// let a = m.limiter(&1).unwrap();
    /// assert!(a.same_limiter(&m.limiter(&1).unwrap())); // cached
    /// assert!(!a.same_limiter(&m.limiter(&2).unwrap())); // one per key
    /// ```
    pub fn limiter(&self, key: &K) -> Result<Limiter, ManagerError> {
        self.lease(key).map(|lease| lease.limiter().clone())
    }

    /// The key's limiter for `config`, looked up by configuration equality: if the key's
    /// configuration equals `config` this is a plain lookup; otherwise it is
    /// [`update`](Self::update) (resize in place, or replace and drain) first.
    ///
    /// # Errors
    /// [`ManagerError::TooManyKeys`], as for [`limiter`](Self::limiter).
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("channels", |_: &u8| LimiterConfig::builder("c").capacity(1).config().unwrap());
    /// let four = LimiterConfig::builder("c").capacity(4).config().unwrap();
    /// let a = m.limiter_with(&1, &four).unwrap();
    /// assert_eq!(a.capacity(), 4);
    /// assert!(a.same_limiter(&m.limiter_with(&1, &four).unwrap()));
    /// ```
    pub fn limiter_with(&self, key: &K, config: &LimiterConfig) -> Result<Limiter, ManagerError> {
        if let Some(slot) = self.read_keys().get(key) {
            if slot.config == *config {
                self.touch(&slot.entry);
                return Ok(slot.entry.limiter().clone());
            }
        }
        self.upsert(key.clone(), config.clone(), false)
            .map(|(lease, _)| lease.limiter().clone())
    }

    /// The key's limiter if the key is present; never creates one.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// assert!(m.get(&1).is_none());
    /// m.limiter(&1).unwrap();
    /// assert!(m.get(&1).is_some());
    /// ```
    pub fn get(&self, key: &K) -> Option<Limiter> {
        self.read_keys()
            .get(key)
            .map(|slot| slot.entry.limiter().clone())
    }

    /// The key's current configuration, if the key is present.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").capacity(3).config().unwrap());
    /// m.limiter(&1).unwrap();
    /// assert_eq!(m.config(&1).unwrap().capacity(), 3);
    /// ```
    pub fn config(&self, key: &K) -> Option<LimiterConfig> {
        self.read_keys().get(key).map(|slot| slot.config.clone())
    }

    /// Sets the key's configuration: creates the key, leaves it unchanged, resizes its
    /// limiter in place, or replaces it (the old one drains). See the
    /// [rules on `LimiterManager`](LimiterManager#changing-a-keys-configuration) for which.
    ///
    /// # Errors
    /// [`ManagerError::TooManyKeys`] if the key is new, `max_keys` is reached and no key is
    /// idle; nothing changes then.
    ///
    /// ```
    /// use fairgate::limit::{LimiterConfig, LimiterManager, Update};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").capacity(1).config().unwrap());
    /// let cfg = |n| LimiterConfig::builder("p").capacity(n).config().unwrap();
    /// assert_eq!(m.update(1, cfg(2))?, Update::Created);
    /// assert_eq!(m.update(1, cfg(2))?, Update::Unchanged);
    /// assert_eq!(m.update(1, cfg(5))?, Update::Resized { from: 2, to: 5 });
    /// assert_eq!(m.update(1, cfg(0))?, Update::Replaced); // to passthrough: a new limiter
    /// # Ok::<(), fairgate::limit::ManagerError>(())
    /// ```
    pub fn update(&self, key: K, config: LimiterConfig) -> Result<Update, ManagerError> {
        self.upsert(key, config, false).map(|(_, update)| update)
    }

    /// Removes the key and returns its limiter. If that limiter is still busy it is
    /// reported as draining until it is idle. The next lookup of the key asks the config
    /// provider again.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").capacity(1).config().unwrap());
    /// let before = m.limiter(&1).unwrap();
    /// assert!(m.remove(&1).unwrap().same_limiter(&before));
    /// assert!(m.remove(&1).is_none());
    /// assert!(!m.limiter(&1).unwrap().same_limiter(&before));
    /// ```
    pub fn remove(&self, key: &K) -> Option<Limiter> {
        let mut keys = self.write_keys();
        let slot = keys.remove(key)?;
        let limiter = slot.entry.limiter().clone();
        self.retire(&keys, key.clone(), slot.entry);
        Some(limiter)
    }

    /// Every key's limiter ([`KeyState::Active`]), then every replaced or removed limiter
    /// that still has permits out or waiters ([`KeyState::Draining`]). Idle draining limiters
    /// are dropped here and never reported. The counts are each limiter's own snapshot.
    ///
    /// ```
    /// # use fairgate::limit::{KeyState, LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").capacity(1).config().unwrap());
    /// let _permit = m.limiter(&7).unwrap().try_acquire().unwrap();
    /// let snap = m.snapshot();
    /// assert_eq!((snap[0].key, snap[0].state, snap[0].limiter.in_flight), (7, KeyState::Active, 1));
    /// ```
    pub fn snapshot(&self) -> Vec<KeySnapshot<K>> {
        let keys = self.read_keys();
        let mut draining = self.lock_draining();
        draining.retain(|(_, lease)| !lease.is_idle());
        let mut out = Vec::with_capacity(keys.len() + draining.len());
        out.extend(keys.iter().map(|(key, slot)| KeySnapshot {
            key: key.clone(),
            state: KeyState::Active,
            limiter: slot.entry.limiter().snapshot(),
        }));
        out.extend(draining.iter().map(|(key, lease)| KeySnapshot {
            key: key.clone(),
            state: KeyState::Draining,
            limiter: lease.limiter().snapshot(),
        }));
        out
    }

    /// The number of keys (draining limiters are not keys).
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// m.limiter(&1).unwrap();
    /// m.limiter(&2).unwrap();
    /// assert_eq!(m.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.read_keys().len()
    }

    /// Whether the manager holds no key.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let m = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// assert!(m.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.read_keys().is_empty()
    }

    /// The key's lease (its limiter, marked busy while the lease lives), creating the key
    /// from the config provider if it is new. The hot path of the keyed layer.
    pub(crate) fn lease(&self, key: &K) -> Result<Lease, ManagerError> {
        if let Some(slot) = self.read_keys().get(key) {
            self.touch(&slot.entry);
            return Ok(slot.entry.clone());
        }
        // User code runs outside every lock.
        let config = (self.shared.config_for)(key);
        self.upsert(key.clone(), config, true)
            .map(|(lease, _)| lease)
    }

    /// The manager's name as a shared string (for rejections).
    #[cfg(feature = "tower")]
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.shared.name
    }

    /// Inserts or changes the key's configuration. With `keep_existing`, a present key is
    /// returned as it is (another thread created it between our read and write locks).
    fn upsert(
        &self,
        key: K,
        config: LimiterConfig,
        keep_existing: bool,
    ) -> Result<(Lease, Update), ManagerError> {
        let mut keys = self.write_keys();
        if let Some(slot) = keys.get_mut(&key) {
            self.touch(&slot.entry);
            if keep_existing || slot.config == config {
                return Ok((slot.entry.clone(), Update::Unchanged));
            }
            let (from, to) = (slot.config.capacity(), config.capacity());
            if from != 0
                && to != 0
                && slot.config.differs_only_in_capacity(&config)
                && slot.entry.limiter().set_capacity(to).is_ok()
            {
                slot.config = config;
                return Ok((slot.entry.clone(), Update::Resized { from, to }));
            }
            let stops_limiting = to == 0 || config.mode() == Mode::Soft;
            let new = self.new_slot(config);
            let lease = new.entry.clone();
            let old = mem::replace(slot, new);
            if stops_limiting {
                // The key no longer limits, so neither should its old limiter: passthrough
                // admits its queued waiters at once. (0 is always a valid capacity.)
                let _ = old.entry.limiter().set_capacity(0);
            }
            self.retire(&keys, key, old.entry);
            return Ok((lease, Update::Replaced));
        }
        self.make_room(&mut keys)?;
        let slot = self.new_slot(config);
        let lease = slot.entry.clone();
        keys.insert(key, slot);
        Ok((lease, Update::Created))
    }

    /// Moves a replaced or removed limiter to the draining list (dropping the idle ones
    /// there). Takes the `keys` guard to keep the lock order and to make the move atomic
    /// for `snapshot`.
    fn retire(&self, _keys: &HashMap<K, Slot>, key: K, entry: Lease) {
        let mut draining = self.lock_draining();
        draining.retain(|(_, lease)| !lease.is_idle());
        if !entry.is_idle() {
            draining.push((key, entry));
        }
    }

    /// Makes room for one more key under `max_keys` by evicting the least recently used idle
    /// key, or refuses.
    fn make_room(&self, keys: &mut HashMap<K, Slot>) -> Result<(), ManagerError> {
        let Some(max_keys) = self.shared.max_keys else {
            return Ok(());
        };
        if keys.len() < max_keys {
            return Ok(());
        }
        let victim = keys
            .iter()
            .filter(|(_, slot)| slot.entry.is_idle())
            .min_by_key(|(_, slot)| slot.entry.0.last_used.load(Relaxed))
            .map(|(key, _)| key.clone());
        match victim {
            Some(key) => {
                keys.remove(&key);
                Ok(())
            }
            None => Err(ManagerError::TooManyKeys { max_keys }),
        }
    }

    fn new_slot(&self, config: LimiterConfig) -> Slot {
        let limiter = match &self.shared.observer {
            Some(observer) => Limiter::with_observer(config.clone(), observer.clone()),
            None => Limiter::new(config.clone()),
        };
        // A new key is the most recently used one.
        let now = self.shared.clock.fetch_add(1, Relaxed) + 1;
        Slot {
            config,
            entry: Lease(Arc::new(Entry {
                limiter,
                last_used: AtomicUsize::new(now),
            })),
        }
    }

    /// Stamps the entry with the current tick, writing only if the stamp is stale (so hot
    /// keys do not bounce a cache line between cores).
    fn touch(&self, entry: &Lease) {
        let now = self.shared.clock.load(Relaxed);
        if entry.0.last_used.load(Relaxed) != now {
            entry.0.last_used.store(now, Relaxed);
        }
    }

    // A panic in user code (a key's `Hash`/`Eq`/`Clone`) while a lock is held leaves the
    // map structurally valid, so poisoning is ignored.
    fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<K, Slot>> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_keys(&self) -> RwLockWriteGuard<'_, HashMap<K, Slot>> {
        self.shared
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_draining(&self) -> MutexGuard<'_, Vec<(K, Lease)>> {
        self.shared
            .draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
