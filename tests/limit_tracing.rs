//! Feature `tracing`: every rejection emits a `debug` event naming the limiter and the
//! reason; admissions emit nothing. Captured with a minimal in-test subscriber.
#![cfg(not(loom))]

use std::fmt;
use std::sync::{Arc, Mutex};

use fairgate::limit::{Limiter, RejectReason};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// An event's level and its fields as text.
type Captured = (Level, Vec<(String, String)>);

/// Records every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    &fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

#[test]
fn rejections_emit_a_debug_event_with_limiter_and_reason() {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), || {
        let limiter = Limiter::builder("traced")
            .capacity(1)
            .max_queue(Some(0))
            .build()
            .unwrap();
        let held = limiter.try_acquire().unwrap();
        assert!(
            capture.0.lock().unwrap().is_empty(),
            "an admission emitted an event"
        );
        assert_eq!(
            limiter.try_acquire().unwrap_err().reason(),
            RejectReason::QueueFull
        );
        limiter.close();
        assert_eq!(
            limiter.try_acquire().unwrap_err().reason(),
            RejectReason::Closed
        );
        drop(held);
    });
    let events = capture.0.lock().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    for ((level, fields), reason) in events.iter().zip(["queue_full", "closed"]) {
        assert_eq!(*level, Level::DEBUG);
        assert_eq!(field(fields, "limiter"), "traced");
        assert_eq!(field(fields, "reason"), reason);
        assert_eq!(field(fields, "waited_ms"), "0.0");
    }
}
