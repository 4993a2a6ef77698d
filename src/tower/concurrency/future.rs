//! The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit), and the admission
//! step both middlewares run in `call`.

use core::fmt;
use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{ready, Context, Poll, Waker};
use std::boxed::Box;

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::limit::{Acquire, LimitPermit, Limiter, Rejected};
use crate::tower::BoxError;

/// A heap slot for an acquire future, reused across calls of one service (`Pin::set`), so
/// that a service allocates at most once for the requests that have to wait (those admitted
/// at once never build an acquire future).
pub(crate) type AcquireSlot = Option<Pin<Box<Acquire>>>;

/// The admission step of `call`: tries `limiter` at once and, if the request must wait,
/// joins the queue **now**, so requests are admitted in the order they were called (not in
/// the order their futures happen to be polled first).
///
/// * Admitted at once: calls the readied `inner` right here and holds the permit in the
///   future; `inner` stays in place (no clone).
/// * Refused at once (`QueueFull`, `Closed`): the future fails; `inner` is not called.
/// * Queued: the readied `inner` moves into the future with the request, a clone stays in
///   its place, and the inner call happens once the permit is granted.
///
/// The first poll uses a no-op waker; the response future's first poll installs the real
/// one (the queue keeps the latest waker), and a permit granted in between is found then.
pub(crate) fn admit<S, Req>(
    limiter: &Limiter,
    slot: &mut AcquireSlot,
    inner: &mut S,
    request: Req,
) -> ResponseFuture<S, Req>
where
    S: Service<Req> + Clone,
{
    // The common case first, without an acquire future: a free permit admits at once and
    // the readied service is called in place (no clone, no allocation, no clock read).
    match limiter.try_admit() {
        Ok(Some(permit)) => return ResponseFuture::running(inner.call(request), permit),
        Err(rejected) => return ResponseFuture::refused(rejected),
        Ok(None) => {}
    }
    let mut acquire = match slot.take() {
        Some(mut reused) => {
            reused.as_mut().set(limiter.acquire());
            reused
        }
        None => Box::pin(limiter.acquire()),
    };
    let mut cx = Context::from_waker(Waker::noop());
    match acquire.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(permit)) => {
            *slot = Some(acquire);
            ResponseFuture::running(inner.call(request), permit)
        }
        Poll::Ready(Err(rejected)) => {
            *slot = Some(acquire);
            ResponseFuture::refused(rejected)
        }
        Poll::Pending => {
            let fresh = inner.clone();
            let readied = mem::replace(inner, fresh);
            ResponseFuture {
                state: State::Acquiring {
                    acquire,
                    service: readied,
                    request,
                },
            }
        }
    }
}

pin_project! {
    /// The future returned by [`ConcurrencyLimit::call`](super::ConcurrencyLimit).
    ///
    /// `call` already tried the limiter: the request was admitted (and the inner service
    /// called), refused, or queued in FIFO order. A queued request waits here (bounded by
    /// the limiter's `max_queue` and `queue_timeout`, or an outer timeout), then calls the
    /// readied inner service it carries. The permit is released as soon as the inner future
    /// completes, or when this future is dropped, whichever comes first. Dropping it while
    /// it waits removes its waiter from the queue; nothing is left behind.
    ///
    /// # Errors
    /// A rejection (`QueueFull`, `QueueTimeout`, `DeadlineExceeded`, `Closed`) resolves to
    /// [`BoxError`] holding a [`Rejected`](crate::limit::Rejected) (use `downcast_ref`); an
    /// error of the inner service is passed through, converted into a [`BoxError`].
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateProjReplace]
    enum State<S, Req, F> {
        // Queued: the readied inner service and the request wait with the acquire future
        // (boxed: it is a queue node and must not move).
        Acquiring {
            acquire: Pin<Box<Acquire>>,
            service: S,
            request: Req,
        },
        // The inner call runs; `permit` is taken (released) the moment it completes. The
        // state stays `Running` after that (a `None` permit marks it finished): the finished
        // inner future is dropped with this future, which spares the fast path a state
        // change.
        Running {
            #[pin]
            future: F,
            permit: Option<LimitPermit>,
        },
        Refused {
            rejected: Rejected,
        },
        Done,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn running(future: S::Future, permit: LimitPermit) -> Self {
        ResponseFuture {
            state: State::Running {
                future,
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn refused(rejected: Rejected) -> Self {
        ResponseFuture {
            state: State::Refused { rejected },
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Acquiring { acquire, .. } => {
                    let permit = match ready!(acquire.as_mut().poll(cx)) {
                        Ok(permit) => permit,
                        Err(rejected) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(rejected.into()));
                        }
                    };
                    let StateProjReplace::Acquiring {
                        mut service,
                        request,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Acquiring a moment ago")
                    };
                    let future = service.call(request);
                    state.set(State::Running {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Running { future, permit } => {
                    if permit.is_none() {
                        panic!("ResponseFuture polled after completion");
                    }
                    let output = ready!(future.poll(cx));
                    // Release before handing the output over: the slot is free even if the
                    // caller keeps this (finished) future around.
                    drop(permit.take());
                    return Poll::Ready(output.map_err(Into::into));
                }
                StateProj::Refused { .. } => {
                    let StateProjReplace::Refused { rejected } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Refused a moment ago")
                    };
                    return Poll::Ready(Err(rejected.into()));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Acquiring { .. } => "acquiring",
            State::Running { permit: None, .. } => "done",
            State::Running { .. } => "running",
            State::Refused { .. } => "refused",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
