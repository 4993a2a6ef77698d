//! Time as the cache keeps it: [`Nanos`] since the cache's epoch, and the
//! clock those readings come from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::{saturating_nanos as nanos, Clock, SystemClock};

/// A clock reading as whole nanoseconds since the cache's epoch (the clock's
/// reading when the cache was built), or a span in nanoseconds.
///
/// Entries store these instead of `Instant`/`Duration`: 8 bytes instead of 16
/// (`Option<Instant>` included, see [`NEVER`]), and comparing or subtracting
/// them is one instruction where `Instant` arithmetic is a call into std.
/// Every `Instant` and `Duration` the cache handles has nanosecond resolution,
/// so the conversion is exact; spans beyond `u64::MAX` ns (~584 years, e.g.
/// `Duration::MAX`) saturate to `u64::MAX`, which compares as "never ends"
/// exactly as the huge `Duration` did.
pub(super) type Nanos = u64;

/// The "no deadline" value of `next_attempt` and `negative_until`. Both are
/// only ever tested as `now < t` (0 never is) and `t <= now` (0 always is),
/// so 0 means exactly what `None` meant, in half the space.
pub(super) const NEVER: Nanos = 0;

/// The cache's clock. The default [`SystemClock`] is a variant of its own,
/// so the hit path reads it with a direct, inlined call instead of through a
/// vtable.
pub(super) enum TimeSource {
    /// [`SystemClock`]: `epoch.elapsed()`, documented std behaviour only.
    System,
    Custom(Arc<dyn Clock>),
}

impl TimeSource {
    pub(super) fn of<C: Clock>(clock: C) -> Self {
        // `SystemClock` is a unit struct: nothing is lost by dropping it.
        if std::any::TypeId::of::<C>() == std::any::TypeId::of::<SystemClock>() {
            TimeSource::System
        } else {
            TimeSource::Custom(Arc::new(clock))
        }
    }

    pub(super) fn now(&self) -> Instant {
        match self {
            TimeSource::System => SystemClock.now(),
            TimeSource::Custom(c) => c.now(),
        }
    }

    /// Whole nanoseconds from `origin` (the epoch) to now, saturating.
    #[inline]
    pub(super) fn nanos_since(&self, origin: Instant) -> Nanos {
        match self {
            TimeSource::System => SystemClock.nanos_since(origin),
            TimeSource::Custom(c) => c.nanos_since(origin),
        }
    }
}

/// A reading so far ahead it never arrives in practice (for saturated sums).
pub(super) fn far_future(now: Nanos) -> Nanos {
    now.saturating_add(nanos(Duration::from_secs(100 * 365 * 24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(
            nanos(Duration::from_secs(u64::MAX / 1_000_000_000 + 1)),
            u64::MAX
        );
    }
}
