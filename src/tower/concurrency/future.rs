//! The response future of [`ConcurrencyLimit`](super::ConcurrencyLimit): wait for a permit,
//! then run the inner call while holding it.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::limit::{Acquire, LimitPermit};
use crate::tower::BoxError;

pin_project! {
    /// The future returned by [`ConcurrencyLimit::call`](super::ConcurrencyLimit).
    ///
    /// It first waits for a permit (in the limiter's FIFO queue, bounded by its `max_queue`
    /// and `queue_timeout`), then calls the inner service it carries and drives that call.
    /// The permit is released as soon as the inner future completes, or when this future is
    /// dropped, whichever comes first. Dropping it while it waits removes its waiter from the
    /// queue; nothing is left behind.
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
        // The readied inner service and the request wait here with the acquire future:
        // the inner service is called only once a permit is held.
        Acquiring {
            #[pin]
            acquire: Acquire,
            service: S,
            request: Req,
        },
        // The inner call runs; `permit` is taken (released) the moment it completes.
        Running {
            #[pin]
            future: F,
            permit: Option<LimitPermit>,
        },
        Done,
    }
}

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    /// A future that waits on `acquire`, then calls the (already readied) `service`.
    pub(crate) fn new(acquire: Acquire, service: S, request: Req) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                acquire,
                service,
                request,
            },
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
                    let permit = match ready!(acquire.poll(cx)) {
                        Ok(permit) => permit,
                        Err(rejected) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(rejected.into()));
                        }
                    };
                    // Move the readied service and the request out; the spent acquire
                    // future is dropped in place.
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
                    let output = ready!(future.poll(cx));
                    // Release before handing the output over: the slot is free even if the
                    // caller keeps this (finished) future around.
                    drop(permit.take());
                    state.set(State::Done);
                    return Poll::Ready(output.map_err(Into::into));
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
            State::Running { .. } => "running",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
