//! The response future shared by the client and server layers: wait for a permit (bounded
//! by the caller's `grpc-timeout`), call the inner service, and hand the permit to the
//! response body.

use core::future::Future;
use core::pin::Pin;
use core::task::{ready, Context, Poll};
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::grpc_timeout;
use super::source::Source;
use super::Settings;
use crate::http::{Admission, HeldPermit, LimitedBody, Release};
use crate::limit::{RejectReason, Rejected};

/// The inner service's result with the body wrapped, or the limiter's refusal (rendered as
/// a status response by the server layer, a status error by the client's).
pub(crate) type Outcome<ResB, E> = Result<Result<Response<LimitedBody<ResB>>, E>, Rejected>;

/// What the future does with the caller's deadline once it holds a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnAdmit {
    /// Nothing (server: tonic's own `GrpcTimeout` started counting when the request arrived).
    Keep,
    /// Rewrite `grpc-timeout` to the budget left (client: the channel's `GrpcTimeout` would
    /// otherwise restart the full budget after the queue wait).
    RewriteTimeout,
}

pin_project! {
    pub(crate) struct Admitting<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, Request<B>, S::Future>,
        release: Release,
        on_admit: OnAdmit,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // The readied inner service and the request wait with the acquire future: nothing is
        // sent (client) or handled (server) before a permit is held. They sit in an `Option`
        // so that the grant takes them out in place instead of moving the whole state
        // (admission included) out with `project_replace`.
        Acquiring {
            #[pin]
            admission: Admission,
            deadline: Option<Instant>,
            call: Option<(S, Req)>,
        },
        // The inner call runs holding the permit; at the response head the permit moves into
        // the body (`Release::BodyEnd`) or is dropped (`Release::ResponseFuture`).
        Running {
            #[pin]
            future: F,
            permit: Option<HeldPermit>,
        },
        Done,
    }
}

impl<S, B> Admitting<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        source: &Source,
        settings: Settings,
        on_admit: OnAdmit,
        service: S,
        request: Request<B>,
    ) -> Self {
        let deadline = if settings.honor_deadline {
            grpc_timeout::deadline(request.headers(), Instant::now)
        } else {
            None
        };
        Admitting {
            state: State::Acquiring {
                admission: source.admission(deadline),
                deadline,
                call: Some((service, request)),
            },
            release: settings.release,
            on_admit,
        }
    }
}

impl<S, B, ResB> Future for Admitting<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body,
{
    type Output = Outcome<ResB, S::Error>;

    // Inlined into the layers' own futures, so that the large `Poll<Outcome>` is built
    // in their return slot instead of being copied out of this one.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Acquiring {
                    admission,
                    deadline,
                    call,
                } => {
                    let acquired = ready!(admission.poll_admit(cx));
                    let deadline = *deadline;
                    let (mut service, mut request) =
                        call.take().expect("the call is present while Acquiring");
                    // The spent admission (and, on a refusal, the request) is dropped here.
                    state.set(State::Done);
                    let permit = acquired?;
                    if *this.on_admit == OnAdmit::RewriteTimeout {
                        rewrite_timeout(&mut request, deadline, &permit)?;
                    }
                    let future = service.call(request);
                    state.set(State::Running {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Running { future, permit } => {
                    let output = ready!(future.poll(cx));
                    let permit = permit.take();
                    state.set(State::Done);
                    let output = output.map(|response| {
                        response.map(|body| match (permit, *this.release) {
                            (Some(permit), Release::BodyEnd) => LimitedBody::holding(body, permit),
                            // Release::ResponseFuture: dropped here, with the head.
                            _ => LimitedBody::unheld(body),
                        })
                    });
                    return Poll::Ready(Ok(output));
                }
                StateProj::Done => panic!("response future polled after completion"),
            }
        }
    }
}

/// After a wait in the queue, tells the channel how much of the caller's budget is left.
/// A permit granted without waiting leaves the header as it was (the microseconds between
/// `call` and the grant are not worth a clock read and a header rewrite on the fast path).
fn rewrite_timeout<B>(
    request: &mut Request<B>,
    deadline: Option<Instant>,
    permit: &HeldPermit,
) -> Result<(), Rejected> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    if permit.waited().is_zero() {
        return Ok(());
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        // Granted as the deadline passed: sending would only be cancelled by the channel.
        // The permit is dropped (released) with this refusal.
        return Err(Rejected::new(
            RejectReason::DeadlineExceeded,
            permit.waited(),
            Arc::from(permit.limiter_name()),
        ));
    }
    request
        .headers_mut()
        .insert(grpc_timeout::GRPC_TIMEOUT, grpc_timeout::encode(left));
    Ok(())
}
