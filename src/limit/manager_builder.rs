//! [`LimiterManagerBuilder`]: the optional settings of a [`LimiterManager`].

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use std::vec::Vec;

use super::{ConfigFor, LimiterManager, ManagerError, Shared};
use crate::limit::{LimiterConfig, Observer};
use crate::sync::AtomicUsize;

/// Builds a [`LimiterManager`]; start with [`LimiterManager::builder`].
pub struct LimiterManagerBuilder<K> {
    name: Arc<str>,
    config_for: ConfigFor<K>,
    max_keys: Option<usize>,
    observer: Option<Arc<dyn Observer>>,
}

impl<K> LimiterManagerBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(super) fn new(
        name: Arc<str>,
        config_for: impl Fn(&K) -> LimiterConfig + Send + Sync + 'static,
    ) -> Self {
        LimiterManagerBuilder {
            name,
            config_for: Arc::new(config_for),
            max_keys: None,
            observer: None,
        }
    }

    /// Bounds the number of keys (default: unbounded). When a new key needs a limiter and
    /// the bound is reached, the least recently used **idle** key is evicted; if no key is
    /// idle, the new key is refused with [`ManagerError::TooManyKeys`]. `0` is refused by
    /// [`build`](Self::build) with [`ManagerError::ZeroMaxKeys`].
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// let manager = LimiterManager::builder("tenants", |_: &u64| {
    ///     LimiterConfig::builder("tenant").capacity(4).config().unwrap()
    /// })
    /// .max_keys(10_000)
    /// .build()?;
    /// assert_eq!(manager.max_keys(), Some(10_000));
    /// # Ok::<(), fairgate::limit::ManagerError>(())
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// Every limiter the manager creates reports to `observer` (metrics, logs). The
    /// observer sees each limiter's configured name, not the key.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use fairgate::limit::{LimiterConfig, LimiterManager, Observer};
    /// struct Quiet;
    /// impl Observer for Quiet {}
    /// let manager = LimiterManager::builder("tenants", |_: &u64| {
    ///     LimiterConfig::builder("tenant").capacity(4).config().unwrap()
    /// })
    /// .observer(Arc::new(Quiet))
    /// .build()?;
    /// # Ok::<(), fairgate::limit::ManagerError>(())
    /// ```
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The manager, or [`ManagerError::ZeroMaxKeys`] for `max_keys(0)`.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager, ManagerError};
    /// let err = LimiterManager::builder("tenants", |_: &u64| {
    ///     LimiterConfig::builder("tenant").capacity(4).config().unwrap()
    /// })
    /// .max_keys(0)
    /// .build()
    /// .unwrap_err();
    /// assert_eq!(err, ManagerError::ZeroMaxKeys);
    /// ```
    pub fn build(self) -> Result<LimiterManager<K>, ManagerError> {
        if self.max_keys == Some(0) {
            return Err(ManagerError::ZeroMaxKeys);
        }
        Ok(LimiterManager {
            shared: Arc::new(Shared {
                name: self.name,
                config_for: self.config_for,
                max_keys: self.max_keys,
                observer: self.observer,
                keys: RwLock::new(HashMap::new()),
                draining: Mutex::new(Vec::new()),
                clock: AtomicUsize::new(0),
            }),
        })
    }
}

impl<K> fmt::Debug for LimiterManagerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterManagerBuilder")
            .field("name", &self.name)
            .field("max_keys", &self.max_keys)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}
