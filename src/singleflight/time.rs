//! Time as the cache keeps it: [`Nanos`] since the cache's epoch, and the
//! clock those readings come from.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::{saturating_nanos as nanos, Clock, ManualClock, SystemClock};

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

/// The cache's clock. The crate's own clocks are variants of their own, so
/// the hit path reads them with a direct, inlined call instead of through a
/// vtable.
pub(super) enum TimeSource {
    /// [`SystemClock`]: `epoch.elapsed()`, documented std behaviour only.
    System,
    /// A [`ManualClock`], read as its advanced nanoseconds minus
    /// `at_epoch`, the advance when the cache took its epoch (exact: the
    /// epoch *is* the clock's base plus `at_epoch`).
    Manual {
        clock: ManualClock,
        at_epoch: Nanos,
    },
    Custom(Arc<dyn Clock>),
}

impl TimeSource {
    pub(super) fn of<C: Clock>(clock: C) -> Self {
        let any: &dyn Any = &clock;
        if any.is::<SystemClock>() {
            // A unit struct: nothing is lost by dropping it.
            TimeSource::System
        } else if let Some(m) = any.downcast_ref::<ManualClock>() {
            TimeSource::Manual {
                clock: m.clone(),
                at_epoch: 0,
            }
        } else {
            TimeSource::Custom(Arc::new(clock))
        }
    }

    /// Takes the cache's epoch: the clock's reading now, from which every
    /// [`Nanos`] counts.
    pub(super) fn take_epoch(&mut self) -> Instant {
        match self {
            TimeSource::System => SystemClock.now(),
            TimeSource::Manual { clock, at_epoch } => {
                let (epoch, advanced) = clock.reading();
                *at_epoch = advanced;
                epoch
            }
            TimeSource::Custom(c) => c.now(),
        }
    }

    /// Whole nanoseconds from `origin` (the epoch) to now, saturating.
    #[inline]
    pub(super) fn nanos_since(&self, origin: Instant) -> Nanos {
        match self {
            TimeSource::System => SystemClock.nanos_since(origin),
            TimeSource::Manual { clock, at_epoch } => clock.advanced().saturating_sub(*at_epoch),
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

    /// The `Manual` shortcut reads exactly what `ManualClock::nanos_since`
    /// would, from an epoch taken after some advance.
    #[test]
    fn manual_shortcut_matches_the_clock() {
        let m = ManualClock::new();
        m.advance(Duration::from_secs(3));
        let mut t = TimeSource::of(m.clone());
        assert!(matches!(t, TimeSource::Manual { .. }));
        let epoch = t.take_epoch();
        assert_eq!(epoch, m.now());
        for step in [0, 1, 999_999_999, 5_000_000_000] {
            m.advance(Duration::from_nanos(step));
            assert_eq!(t.nanos_since(epoch), m.nanos_since(epoch));
        }
        assert!(matches!(TimeSource::of(SystemClock), TimeSource::System));
    }

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
