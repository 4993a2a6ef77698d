//! The one place atomics, cells and spin hints come from, so that `--cfg loom` can swap every
//! one of them for loom's instrumented version. Nothing else in the crate names
//! `core::sync::atomic` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize};

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle::sync::atomic::{AtomicPtr, AtomicUsize};

#[cfg(not(any(loom, shuttle)))]
pub(crate) use core::sync::atomic::{AtomicPtr, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
// Shuttle's schedules are sequentially consistent; core's fence is enough there.
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::fence;

pub(crate) use core::sync::atomic::Ordering;

/// Atomics that loom and shuttle do not track: for statistics in models and fault injection in
/// tests only, never for synchronisation.
#[cfg(any(loom, test))]
pub(crate) use core::sync::atomic as untracked;

/// Emits a `const fn` normally and a plain `fn` under loom, whose atomics are not `const`
/// constructible.
macro_rules! const_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[cfg(not(loom))]
        $vis const fn $name($($arg: $ty),*) -> $ret $body

        $(#[$meta])*
        #[cfg(loom)]
        $vis fn $name($($arg: $ty),*) -> $ret $body
    };
}
pub(crate) use const_unless_loom;

/// An `UnsafeCell` with loom's closure-based API, so accesses are tracked under loom and free
/// otherwise.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(loom)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// An `UnsafeCell` with loom's closure-based API, so accesses are tracked under loom and free
/// otherwise.
#[cfg(not(loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Backs off while waiting for the handoff holder to finish with a node: spins briefly, then
/// yields the thread where there is an OS to yield to. Under loom every step yields so the model
/// can schedule the holder.
pub(crate) struct Backoff {
    #[cfg_attr(any(loom, shuttle), allow(dead_code))]
    step: u32,
}

impl Backoff {
    #[cfg(not(any(loom, shuttle)))]
    const SPIN_LIMIT: u32 = 6;

    pub(crate) fn new() -> Self {
        Self { step: 0 }
    }

    pub(crate) fn snooze(&mut self) {
        #[cfg(loom)]
        {
            loom::thread::yield_now();
        }
        #[cfg(all(shuttle, not(loom)))]
        {
            shuttle::thread::yield_now();
        }
        #[cfg(not(any(loom, shuttle)))]
        {
            if self.step <= Self::SPIN_LIMIT {
                for _ in 0..(1u32 << self.step) {
                    core::hint::spin_loop();
                }
                self.step += 1;
            } else {
                #[cfg(feature = "std")]
                std::thread::yield_now();
                #[cfg(not(feature = "std"))]
                core::hint::spin_loop();
            }
        }
    }
}
