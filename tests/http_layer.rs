//! The http layers and the permit-holding body in-process (no sockets): exactly-once
//! release on every way a body can end, the rejection responses, readiness, release modes.
#![cfg(not(loom))]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fairgate::http::{LimitedBody, RejectionResponse, Release, ServerLimitLayer};
use fairgate::limit::{Limiter, LimiterConfig, LimiterManager, Observer, RejectReason, Rejected};
use futures::stream;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::time::timeout;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Releases(AtomicUsize);

impl Observer for Releases {
    fn on_released(&self, _limiter: &str, _held: Duration) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counted(capacity: usize) -> (Limiter, Arc<Releases>) {
    let releases = Arc::new(Releases::default());
    let limiter = Limiter::builder("body")
        .capacity(capacity)
        .observer(releases.clone())
        .build()
        .unwrap();
    (limiter, releases)
}

type FrameResult = Result<Frame<Bytes>, std::io::Error>;
type Streamed = StreamBody<stream::Iter<std::vec::IntoIter<FrameResult>>>;

fn streamed(frames: Vec<FrameResult>) -> Streamed {
    StreamBody::new(stream::iter(frames))
}

fn data(s: &'static str) -> FrameResult {
    Ok(Frame::data(Bytes::from(s)))
}

#[tokio::test]
async fn released_once_at_the_end_of_the_stream() {
    let (limiter, releases) = counted(1);
    let mut body = LimitedBody::new(
        streamed(vec![data("a"), data("b")]),
        limiter.try_acquire().unwrap(),
    );
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    assert!(
        body.holds_permit(),
        "a stream body is not known to be over before its end"
    );
    assert!(body.frame().await.is_none());
    assert!(!body.holds_permit());
    assert_eq!(limiter.in_flight(), 0);
    assert!(body.frame().await.is_none());
    drop(body);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1, "exactly once");
}

#[tokio::test]
async fn released_once_at_an_error() {
    let (limiter, releases) = counted(1);
    let error = Err(std::io::Error::other("upstream reset"));
    let mut body = LimitedBody::new(
        streamed(vec![data("a"), error, data("never")]),
        limiter.try_acquire().unwrap(),
    );
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.in_flight(), 1);
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(limiter.in_flight(), 0, "released at the error");
    drop(body);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn released_once_at_trailers() {
    let (limiter, releases) = counted(1);
    let trailers = Ok(Frame::trailers(HeaderMap::new()));
    let mut body = LimitedBody::new(
        streamed(vec![data("a"), trailers]),
        limiter.try_acquire().unwrap(),
    );
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.in_flight(), 1);
    assert!(body.frame().await.unwrap().unwrap().is_trailers());
    assert_eq!(limiter.in_flight(), 0, "released at the trailers");
    assert!(body.frame().await.is_none());
    drop(body);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn released_once_on_drop() {
    let (limiter, releases) = counted(1);
    let mut body = LimitedBody::new(
        streamed(vec![data("a"), data("b")]),
        limiter.try_acquire().unwrap(),
    );
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.in_flight(), 1);
    drop(body);
    assert_eq!(limiter.in_flight(), 0);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1);
}

#[test]
fn a_body_already_at_its_end_releases_at_once() {
    let (limiter, releases) = counted(1);
    let empty = LimitedBody::new(Empty::<Bytes>::new(), limiter.try_acquire().unwrap());
    assert!(!empty.holds_permit());
    assert!(empty.is_end_stream());
    assert_eq!(limiter.in_flight(), 0);
    drop(empty);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_last_frame_of_a_sized_body_releases_and_hints_are_forwarded() {
    let (limiter, releases) = counted(1);
    let mut body = LimitedBody::new(
        Full::new(Bytes::from("abc")),
        limiter.try_acquire().unwrap(),
    );
    assert_eq!(body.size_hint().exact(), Some(3));
    assert!(!body.is_end_stream());
    body.frame().await.unwrap().unwrap();
    // The inner body reports its end after its only frame: no further poll needed.
    assert!(body.is_end_stream());
    assert_eq!(limiter.in_flight(), 0);
    assert!(body.frame().await.is_none());
    drop(body);
    assert_eq!(releases.0.load(Ordering::SeqCst), 1);
}

fn ok_service(
    text: &'static str,
) -> impl tower::Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    })
}

async fn body_text(response: Response<LimitedBody<Full<Bytes>>>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// Statuses per reason, the 503 preset, an opt-in Retry-After.
#[tokio::test]
async fn rejection_statuses_and_retry_after() {
    timeout(LIMIT, async {
        let closed = Limiter::builder("shut").capacity(1).build().unwrap();
        closed.close();
        let response = ServerLimitLayer::new(closed.clone())
            .layer(ok_service("x"))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body_text(response).await.contains(r#""type":"closed""#));

        let full = Limiter::builder("full")
            .capacity(1)
            .max_queue(Some(0))
            .build()
            .unwrap();
        let held = full.try_acquire().unwrap();
        let preset = ServerLimitLayer::new(full.clone()).rejection(
            RejectionResponse::service_unavailable().retry_after(Some(Duration::from_secs(3))),
        );
        let response = preset
            .layer(ok_service("x"))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "3");
        assert!(body_text(response)
            .await
            .starts_with(r#"{"error":{"type":"queue_full","message":"limiter `full`"#));

        let custom = ServerLimitLayer::new(full.clone()).rejection(
            RejectionResponse::default()
                .status(RejectReason::QueueFull, StatusCode::INSUFFICIENT_STORAGE),
        );
        let response = custom
            .layer(ok_service("x"))
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), 507);
        assert!(response.headers().get("retry-after").is_none());
        drop(held);

        let deadline = Rejected::new(
            RejectReason::DeadlineExceeded,
            Duration::from_millis(5),
            "d".into(),
        );
        assert_eq!(RejectionResponse::default().render(&deadline).status(), 504);
    })
    .await
    .unwrap();
}

/// A manager out of keys answers 503 `too_many_keys` and leaves the inner service alone.
#[tokio::test]
async fn keyed_too_many_keys_is_a_503() {
    timeout(LIMIT, async {
        let manager = LimiterManager::builder("tenants", |t: &String| {
            LimiterConfig::builder(t.as_str())
                .capacity(1)
                .config()
                .unwrap()
        })
        .max_keys(1)
        .build()
        .unwrap();
        let busy = manager
            .limiter(&"a".to_string())
            .unwrap()
            .try_acquire()
            .unwrap();
        let layer = ServerLimitLayer::keyed(manager.clone(), |req: &Request<()>| {
            req.headers()
                .get("tenant")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        });
        let req = Request::builder().header("tenant", "b").body(()).unwrap();
        let response = layer.layer(ok_service("x")).oneshot(req).await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(body_text(response)
            .await
            .contains(r#""type":"too_many_keys""#));
        drop(busy);
        let req = Request::builder().header("tenant", "b").body(()).unwrap();
        let response = layer.layer(ok_service("y")).oneshot(req).await.unwrap();
        assert_eq!(body_text(response).await, "y");
    })
    .await
    .unwrap();
}

/// `poll_ready` takes no permit: a service is ready while its limiter is exhausted; an
/// inner error releases the permit and passes through unchanged.
#[tokio::test]
async fn readiness_takes_nothing_and_errors_release() {
    timeout(LIMIT, async {
        let limiter = Limiter::builder("r").capacity(1).build().unwrap();
        let held = limiter.try_acquire().unwrap();
        let mut svc = ServerLimitLayer::new(limiter.clone()).layer(ok_service("x"));
        svc.ready().await.unwrap();
        assert_eq!((limiter.in_flight(), limiter.waiting()), (1, 0));
        drop(held);

        let failing = ServiceBuilder::new()
            .layer(ServerLimitLayer::new(limiter.clone()))
            .service(service_fn(|_req: Request<()>| async {
                Err::<Response<Full<Bytes>>, _>(std::io::Error::other("handler failed"))
            }));
        let err = failing.oneshot(Request::new(())).await.unwrap_err();
        assert_eq!(err.to_string(), "handler failed");
        assert_eq!(limiter.in_flight(), 0);
    })
    .await
    .unwrap();
}

/// Release modes in-process: the body holds the permit by default, nothing with
/// `Release::ResponseFuture`.
#[tokio::test]
async fn release_modes() {
    timeout(LIMIT, async {
        let limiter = Limiter::builder("m").capacity(2).build().unwrap();
        let body_end = ServerLimitLayer::new(limiter.clone()).layer(ok_service("x"));
        let response = body_end.oneshot(Request::new(())).await.unwrap();
        assert!(response.body().holds_permit());
        assert_eq!(limiter.in_flight(), 1);
        assert_eq!(body_text(response).await, "x");
        assert_eq!(limiter.in_flight(), 0);

        let head = ServerLimitLayer::new(limiter.clone())
            .release(Release::ResponseFuture)
            .layer(ok_service("x"));
        let response = head.oneshot(Request::new(())).await.unwrap();
        assert!(!response.body().holds_permit());
        assert_eq!(limiter.in_flight(), 0);
    })
    .await
    .unwrap();
}

/// The keyed client layer: each key (here: the upstream host) has its own limiter; a full
/// key is an `Err(Rejected)`, another key is unaffected, and the body holds the key's permit.
#[tokio::test]
async fn keyed_client_limits_per_host() {
    timeout(LIMIT, async {
        let manager = LimiterManager::new("hosts", |host: &String| {
            LimiterConfig::builder(host.as_str())
                .capacity(1)
                .max_queue(Some(0))
                .config()
                .unwrap()
        });
        let client =
            fairgate::http::ClientLimitLayer::keyed(manager.clone(), |req: &Request<()>| {
                req.uri().host().unwrap_or_default().to_string()
            })
            .layer(ok_service("pong"));
        let to = |host: &str| Request::get(format!("http://{host}/")).body(()).unwrap();

        let a = client.clone().oneshot(to("a.example")).await.unwrap();
        assert_eq!(
            manager
                .limiter(&"a.example".to_string())
                .unwrap()
                .in_flight(),
            1
        );
        let err = client.clone().oneshot(to("a.example")).await.unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
        assert_eq!(rejected.reason(), RejectReason::QueueFull);
        assert_eq!(rejected.limiter(), "a.example");

        let b = client.clone().oneshot(to("b.example")).await.unwrap();
        assert_eq!(b.into_body().collect().await.unwrap().to_bytes(), "pong");
        assert_eq!(a.into_body().collect().await.unwrap().to_bytes(), "pong");
        assert_eq!(
            manager
                .limiter(&"a.example".to_string())
                .unwrap()
                .in_flight(),
            0
        );
        assert_eq!(
            manager
                .limiter(&"b.example".to_string())
                .unwrap()
                .in_flight(),
            0
        );
    })
    .await
    .unwrap();
}
