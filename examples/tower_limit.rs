//! A tower service behind fairgate's admission control: a shared limiter with a bounded FIFO
//! queue, a typed rejection, the counts, and per-tenant limiters from a `LimiterManager`.
//!
//! `cargo run --example tower_limit --features tower`

use std::convert::Infallible;
use std::time::Duration;

use fairgate::limit::{Limiter, LimiterConfig, LimiterManager, RejectReason, Rejected};
use fairgate::tower::{BoxError, ConcurrencyLimitLayer, KeyedLimitLayer};
use tokio::sync::oneshot;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

/// A "backend" call: waits until told to finish (or finishes at once).
async fn backend(
    (name, done): (&'static str, Option<oneshot::Receiver<()>>),
) -> Result<String, Infallible> {
    if let Some(done) = done {
        let _ = done.await;
    }
    Ok(format!("served {name}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // One limiter: 1 request at a time, at most 1 waiting, at most 1 s in the queue.
    let limiter = Limiter::builder("backend")
        .capacity(1)
        .max_queue(Some(1))
        .queue_timeout(Duration::from_secs(1))
        .build()?;
    let svc = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(service_fn(backend));

    let (finish_a, a_done) = oneshot::channel();
    let a = tokio::spawn(svc.clone().oneshot(("a", Some(a_done))));
    let b = tokio::spawn(svc.clone().oneshot(("b", None)));
    while limiter.waiting() < 1 {
        tokio::task::yield_now().await; // until "a" runs and "b" queues
    }
    println!(
        "in flight {}, waiting {}, capacity {}",
        limiter.in_flight(),
        limiter.waiting(),
        limiter.capacity()
    );

    // The queue is full: "c" is refused at once with a typed error.
    let err = svc.clone().oneshot(("c", None)).await.unwrap_err();
    let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
    assert_eq!(rejected.reason(), RejectReason::QueueFull);
    println!("c: {rejected} (reason {})", rejected.reason().as_str());

    finish_a.send(()).unwrap();
    println!("a: {}", a.await??);
    println!("b: {}", b.await??); // the released slot went straight to "b"
    println!("after: {:?}", limiter.snapshot());

    // Per-tenant limiters: 2 at a time per tenant, at most 1000 tenants tracked.
    let tenants = LimiterManager::builder("tenants", |tenant: &String| {
        LimiterConfig::builder(format!("tenant-{tenant}"))
            .capacity(2)
            .config()
            .expect("a valid config")
    })
    .max_keys(1000)
    .build()?;
    let mut keyed = ServiceBuilder::new()
        .layer(KeyedLimitLayer::new(
            tenants.clone(),
            |(tenant, _): &(String, u32)| tenant.clone(),
        ))
        .service(service_fn(|(tenant, n): (String, u32)| async move {
            Ok::<_, Infallible>(format!("{tenant}#{n}"))
        }));
    for (tenant, n) in [("acme", 1), ("globex", 1), ("acme", 2)] {
        let reply = keyed.ready().await?.call((tenant.to_string(), n)).await?;
        println!("keyed: {reply}");
    }
    // Give one tenant more room at run time: resized in place.
    let update = tenants.update(
        "acme".into(),
        LimiterConfig::builder("tenant-acme").capacity(8).config()?,
    )?;
    println!("acme: {update:?}");
    for s in tenants.snapshot() {
        println!(
            "  {:>7} {:?}: capacity {}, in flight {}",
            s.key, s.state, s.limiter.capacity, s.limiter.in_flight
        );
    }
    Ok(())
}
