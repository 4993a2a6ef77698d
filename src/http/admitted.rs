//! The response future shared by the server and client layers: wait for a permit, call
//! the inner service, and hand the permit to the response body (or drop it with the future).

use core::future::Future;
use core::mem;
use core::pin::Pin;
use core::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::admit::{Admission, Admit};
use super::body::LimitedBody;
use super::held::HeldPermit;
use super::Release;
use crate::limit::Rejected;

/// What the shared future yields: the inner service's result with the body wrapped, or the
/// limiter's refusal (rendered as a response by the server layer, an error by the client's).
pub(crate) type Outcome<ResB, E> = Result<Result<Response<LimitedBody<ResB>>, E>, Rejected>;

pin_project! {
    pub(crate) struct Admitted<S, ReqB>
    where
        S: Service<Request<ReqB>>,
    {
        #[pin]
        state: State<S, Request<ReqB>, S::Future>,
        release: Release,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        // The readied inner service and the request wait with the admission (a local
        // acquire, a fleet acquire or a refusal): the handler runs only once a permit is held.
        // They sit in an `Option` so that the grant takes them out in place instead of
        // moving the whole state (admission included) out with `project_replace`.
        Acquiring {
            #[pin]
            admission: Admission,
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

impl<S, ReqB> Admitted<S, ReqB>
where
    S: Service<Request<ReqB>>,
{
    /// The `call` of both layers: starts `request`'s admission (it never waits here) and
    /// moves the readied `service` into the future, leaving a fresh clone behind (tower's
    /// contract: the service that was polled ready is the one that gets called).
    pub(crate) fn start<A>(
        admit: &A,
        service: &mut S,
        request: Request<ReqB>,
        release: Release,
    ) -> Self
    where
        S: Clone,
        A: Admit<Request<ReqB>>,
    {
        let admission = admit.admit(&request);
        let fresh = service.clone();
        let readied = mem::replace(service, fresh);
        Admitted {
            state: State::Acquiring {
                admission,
                call: Some((readied, request)),
            },
            release,
        }
    }

    pub(crate) fn stage(&self) -> &'static str {
        match self.state {
            State::Acquiring { ref admission, .. } if admission.is_refused() => "refused",
            State::Acquiring { .. } => "acquiring",
            State::Running { .. } => "running",
            State::Done => "done",
        }
    }
}

impl<S, ReqB, ResB> Future for Admitted<S, ReqB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
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
                StateProj::Acquiring { admission, call } => {
                    let permit = match ready!(admission.poll_admit(cx)) {
                        Ok(permit) => permit,
                        Err(rejected) => {
                            state.set(State::Done);
                            return Poll::Ready(Err(rejected));
                        }
                    };
                    // Take the readied service and the request out in place; the spent
                    // admission is dropped before the handler runs, as it always was.
                    let (mut service, request) =
                        call.take().expect("the call is present while Acquiring");
                    state.set(State::Done);
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
                            // Release::ResponseFuture: the permit is dropped here, with the
                            // head, as tower's ConcurrencyLimit does.
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
