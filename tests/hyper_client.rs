//! The http client layer around hyper-util's legacy client, and the hyper accept-loop
//! connection limiter, on 127.0.0.1.
#![cfg(not(loom))]

#[path = "hyper_support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use fairgate::http::{ClientLimitLayer, Release};
use fairgate::hyper::Server;
use fairgate::limit::{Limiter, RejectReason, Rejected};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tower::{ServiceBuilder, ServiceExt};

fn limiter(name: &str, capacity: usize, max_queue: Option<usize>) -> Limiter {
    Limiter::builder(name)
        .capacity(capacity)
        .max_queue(max_queue)
        .build()
        .unwrap()
}

/// The client's permit is taken before sending and held until the response body ends: a
/// second request is not even sent while the first response streams.
#[tokio::test]
async fn client_permit_held_until_the_body_ends() {
    timeout(LIMIT, async {
        for proto in PROTOCOLS {
            let (app, mut ctl) = app();
            let addr = start(app).await;
            let limiter = limiter("upstream", 1, None);
            let client = ServiceBuilder::new()
                .layer(ClientLimitLayer::new(limiter.clone()))
                .service(client(proto));

            let response = client.clone().oneshot(get(addr, "/stream")).await.unwrap();
            let mut body = response.into_body();
            body.frame().await.unwrap().unwrap();
            assert_eq!(ctl.next_started().await, "/stream");
            assert_eq!(limiter.in_flight(), 1);

            let second = tokio::spawn(client.clone().oneshot(get(addr, "/fast")));
            wait_until(|| limiter.waiting() == 1).await;
            assert_eq!(
                ctl.calls.load(Ordering::SeqCst),
                1,
                "{proto:?}: not sent yet"
            );

            // Dropping the body mid-stream releases the slot to the queued request.
            drop(body);
            let second = second.await.unwrap().unwrap();
            assert_eq!(read_all(second.into_body()).await, "ok");
            assert_eq!(ctl.calls.load(Ordering::SeqCst), 2);
            assert_eq!(limiter.in_flight(), 0);
            ctl.finish();
        }
    })
    .await
    .expect("test timed out");
}

/// A refusal is `Err(Rejected)` and the request is never sent; an error of the inner
/// client releases the permit; `Release::ResponseFuture` releases at the head.
#[tokio::test]
async fn client_rejections_errors_and_release_mode() {
    timeout(LIMIT, async {
        let (app, ctl) = app();
        let addr = start(app).await;
        let limiter = limiter("upstream", 1, Some(0));
        let client = ServiceBuilder::new()
            .layer(ClientLimitLayer::new(limiter.clone()))
            .service(client(Proto::Http1));

        let open = client.clone().oneshot(get(addr, "/stream")).await.unwrap();
        let err = client
            .clone()
            .oneshot(get(addr, "/fast"))
            .await
            .unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
        assert_eq!(rejected.reason(), RejectReason::QueueFull);
        assert_eq!(
            ctl.calls.load(Ordering::SeqCst),
            1,
            "the refused request was not sent"
        );
        drop(open);
        wait_until(|| limiter.in_flight() == 0).await;

        // Connection refused: the inner error passes through, the permit comes back.
        let closed = bind().await;
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let err = client
            .clone()
            .oneshot(get(dead, "/fast"))
            .await
            .unwrap_err();
        assert!(err.downcast_ref::<Rejected>().is_none(), "{err}");
        assert_eq!(limiter.in_flight(), 0);

        // Release at the head.
        let head_only = ServiceBuilder::new()
            .layer(ClientLimitLayer::new(limiter.clone()).release(Release::ResponseFuture))
            .service(client.get_ref().clone());
        let streaming = head_only
            .clone()
            .oneshot(get(addr, "/stream"))
            .await
            .unwrap();
        assert_eq!(limiter.in_flight(), 0);
        let fast = head_only.oneshot(get(addr, "/fast")).await.unwrap();
        assert_eq!(read_all(fast.into_body()).await, "ok");
        ctl.finish();
        read_all(streaming.into_body()).await;
    })
    .await
    .expect("test timed out");
}

/// One HTTP/1 connection made by hand (so the test decides when it opens and closes).
async fn connect(
    addr: std::net::SocketAddr,
) -> (
    http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

async fn fetch(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    addr: std::net::SocketAddr,
) -> hyper::Result<Bytes> {
    let response = sender.send_request(get(addr, "/fast")).await?;
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The connection limiter caps accepted connections: with 2 slots, a third connection is
/// not accepted (its request gets no answer) until one of the first two closes.
#[tokio::test]
async fn connection_limiter_caps_accepted_connections() {
    timeout(LIMIT, async {
        let connections = limiter("connections", 2, None);
        let (app, ctl) = app();
        let server = Server::new(bind().await).connection_limit(connections.clone());
        let addr = start_server(server, app);

        let (mut a, a_task) = connect(addr).await;
        let (mut b, _b_task) = connect(addr).await;
        assert_eq!(fetch(&mut a, addr).await.unwrap(), "ok");
        assert_eq!(fetch(&mut b, addr).await.unwrap(), "ok");
        assert_eq!(connections.in_flight(), 2);

        let (mut c, _c_task) = connect(addr).await; // TCP connects: the kernel's backlog
        let third = tokio::spawn(async move { fetch(&mut c, addr).await.map(|body| (body, c)) });
        // The accept loop waits for a slot before accepting.
        wait_until(|| connections.waiting() == 1).await;
        assert_eq!(connections.in_flight(), 2);
        assert_eq!(
            ctl.calls.load(Ordering::SeqCst),
            2,
            "the third connection was not served"
        );
        assert!(!third.is_finished());

        // Closing connection a frees its slot: c is accepted and answered.
        drop(a);
        a_task.abort();
        let (body, _c) = third.await.unwrap().unwrap();
        assert_eq!(body, "ok");
        assert_eq!(connections.in_flight(), 2);
        assert_eq!(fetch(&mut b, addr).await.unwrap(), "ok");
    })
    .await
    .expect("test timed out");
}

/// A connection limiter that refuses instead of queueing (`max_queue(Some(0))`) sheds: the
/// excess connection is accepted and closed at once.
#[tokio::test]
async fn connection_limiter_without_queue_sheds() {
    timeout(LIMIT, async {
        let connections = limiter("connections", 1, Some(0));
        let (app, _ctl) = app();
        let server = Server::new(bind().await).connection_limit(connections.clone());
        let addr = start_server(server, app);

        let (mut a, _a_task) = connect(addr).await;
        assert_eq!(fetch(&mut a, addr).await.unwrap(), "ok");
        let (mut b, _b_task) = connect(addr).await;
        assert!(
            fetch(&mut b, addr).await.is_err(),
            "closed without an answer"
        );
        assert_eq!(connections.in_flight(), 1);
        assert_eq!(fetch(&mut a, addr).await.unwrap(), "ok");
    })
    .await
    .expect("test timed out");
}
