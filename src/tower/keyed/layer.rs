//! [`KeyedLimitLayer`]: wraps services in [`KeyedLimit`] over one shared manager.

use core::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::KeyedLimit;
use crate::limit::LimiterManager;

/// Wraps services in [`KeyedLimit`]: each request is admitted by the limiter of its key,
/// `key_fn(&request)` (a tenant header, a channel id, a peer address), from one shared
/// [`LimiterManager`].
///
/// Keys often come from request data, so give the manager a
/// [`max_keys`](crate::limit::LimiterManagerBuilder::max_keys) bound: a flood of distinct
/// keys then evicts idle keys and, once every key is busy, is refused with
/// [`TooManyKeys`](crate::limit::RejectReason::TooManyKeys) instead of growing memory.
///
/// # Example
/// ```
/// use fairgate::limit::{LimiterConfig, LimiterManager};
/// use fairgate::tower::KeyedLimitLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairgate::tower::BoxError> {
/// // Two concurrent requests per tenant, at most 10 000 tenants tracked.
/// let manager = LimiterManager::builder("tenants", |tenant: &String| {
///     LimiterConfig::builder(tenant.as_str()).capacity(2).config().unwrap()
/// })
/// .max_keys(10_000)
/// .build()?;
/// let svc = ServiceBuilder::new()
///     .layer(KeyedLimitLayer::new(manager.clone(), |(tenant, _): &(String, u32)| tenant.clone()))
///     .service(service_fn(|(_, n): (String, u32)| async move {
///         Ok::<_, std::convert::Infallible>(n + 1)
///     }));
/// assert_eq!(svc.oneshot(("acme".to_string(), 41)).await?, 42);
/// assert_eq!(manager.limiter(&"acme".to_string())?.in_flight(), 0);
/// # Ok(())
/// # }
/// ```
pub struct KeyedLimitLayer<K, F> {
    manager: LimiterManager<K>,
    key_fn: Arc<F>,
}

impl<K, F> KeyedLimitLayer<K, F> {
    /// A layer whose services admit each request through `manager`'s limiter for
    /// `key_fn(&request)`.
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// let manager = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// let layer = KeyedLimitLayer::new(manager, |req: &(u8, &str)| req.0);
    /// assert_eq!(layer.manager().name(), "peers");
    /// ```
    pub fn new(manager: LimiterManager<K>, key_fn: F) -> Self {
        KeyedLimitLayer {
            manager,
            key_fn: Arc::new(key_fn),
        }
    }

    /// The manager holding the per-key limiters (snapshot, update, remove).
    ///
    /// ```
    /// # use fairgate::limit::{LimiterConfig, LimiterManager};
    /// # use fairgate::tower::KeyedLimitLayer;
    /// let manager = LimiterManager::new("peers", |_: &u8| LimiterConfig::builder("p").config().unwrap());
    /// let layer = KeyedLimitLayer::new(manager, |req: &u8| *req);
    /// assert!(layer.manager().snapshot().is_empty());
    /// ```
    pub fn manager(&self) -> &LimiterManager<K> {
        &self.manager
    }
}

impl<K, F> Clone for KeyedLimitLayer<K, F> {
    fn clone(&self) -> Self {
        KeyedLimitLayer {
            manager: self.manager.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F> fmt::Debug for KeyedLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimitLayer")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

impl<S, K, F> Layer<S> for KeyedLimitLayer<K, F> {
    type Service = KeyedLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedLimit::new(inner, self.manager.clone(), self.key_fn.clone())
    }
}
