//! How a refusal becomes a gRPC [`Status`]: the code per reason and the reason metadata.

use std::string::ToString;
use std::sync::Arc;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::limit::{RejectReason, Rejected};

/// The metadata key (a response header or trailer on the wire) naming why a call was
/// refused: `queue_full`, `queue_timeout`, `deadline_exceeded`, `closed`, `unavailable` or
/// `too_many_keys`
/// ([`RejectReason::as_str`]).
///
/// ```
/// # let status = fairgate::tonic::rejection_status(
/// #     &fairgate::limit::Rejected::new(fairgate::limit::RejectReason::QueueFull, Default::default(), "api".into()),
/// #     Default::default());
/// let reason = status.metadata().get(fairgate::tonic::REJECT_REASON_KEY).unwrap();
/// assert_eq!(reason, "queue_full");
/// ```
pub const REJECT_REASON_KEY: &str = "fairgate-reject-reason";

/// The code of a call that waited for the limiter's `queue_timeout` without getting a slot.
///
/// It is not the caller's deadline, so not `DEADLINE_EXCEEDED`. `RESOURCE_EXHAUSTED` (the
/// default) is retried by gRPC clients only when a retry policy lists it, which keeps an
/// overloaded server from a retry storm; `UNAVAILABLE` is retried by default by most clients
/// (choose it when the caller should try another replica).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum QueueTimeoutCode {
    /// `RESOURCE_EXHAUSTED` (8), the default.
    #[default]
    ResourceExhausted,
    /// `UNAVAILABLE` (14).
    Unavailable,
}

impl QueueTimeoutCode {
    /// The gRPC code.
    ///
    /// ```
    /// use fairgate::tonic::QueueTimeoutCode;
    /// assert_eq!(QueueTimeoutCode::Unavailable.code(), tonic::Code::Unavailable);
    /// ```
    pub fn code(self) -> Code {
        match self {
            QueueTimeoutCode::ResourceExhausted => Code::ResourceExhausted,
            QueueTimeoutCode::Unavailable => Code::Unavailable,
        }
    }
}

/// The [`Status`] the tonic layers answer a refusal with:
///
/// | reason | code |
/// |---|---|
/// | `QueueFull`, `TooManyKeys` | `RESOURCE_EXHAUSTED` |
/// | `QueueTimeout` | `queue_timeout` ([`QueueTimeoutCode`], `RESOURCE_EXHAUSTED` by default) |
/// | `DeadlineExceeded` (the caller's `grpc-timeout` ran out while queued) | `DEADLINE_EXCEEDED` |
/// | `Closed`, `Unavailable` (a fleet limiter's Redis unreachable, fail closed) | `UNAVAILABLE` |
///
/// The message is the [`Rejected`]'s `Display`, the metadata carries
/// [`REJECT_REASON_KEY`], and the `Rejected` is the status' error
/// [`source`](std::error::Error::source) (on the client side, where the status never
/// crosses the wire).
///
/// ```
/// use fairgate::limit::{RejectReason, Rejected};
/// use fairgate::tonic::{rejection_status, QueueTimeoutCode};
///
/// let timed_out = Rejected::new(RejectReason::QueueTimeout, Default::default(), "api".into());
/// let status = rejection_status(&timed_out, QueueTimeoutCode::Unavailable);
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.message(), "limiter `api` rejected the request: queue_timeout");
/// ```
pub fn rejection_status(rejected: &Rejected, queue_timeout: QueueTimeoutCode) -> Status {
    let code = match rejected.reason() {
        RejectReason::QueueFull | RejectReason::TooManyKeys => Code::ResourceExhausted,
        RejectReason::QueueTimeout => queue_timeout.code(),
        RejectReason::DeadlineExceeded => Code::DeadlineExceeded,
        RejectReason::Closed | RejectReason::Unavailable => Code::Unavailable,
    };
    let mut metadata = MetadataMap::new();
    metadata.insert(
        REJECT_REASON_KEY,
        MetadataValue::from_static(rejected.reason().as_str()),
    );
    let mut status = Status::with_metadata(code, rejected.to_string(), metadata);
    status.set_source(Arc::new(rejected.clone()));
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: RejectReason) -> Status {
        let rejected = Rejected::new(reason, Default::default(), "t".into());
        rejection_status(&rejected, QueueTimeoutCode::default())
    }

    #[test]
    fn every_reason_has_its_code_and_metadata() {
        let cases = [
            (RejectReason::QueueFull, Code::ResourceExhausted),
            (RejectReason::QueueTimeout, Code::ResourceExhausted),
            (RejectReason::DeadlineExceeded, Code::DeadlineExceeded),
            (RejectReason::Closed, Code::Unavailable),
            (RejectReason::Unavailable, Code::Unavailable),
            (RejectReason::TooManyKeys, Code::ResourceExhausted),
        ];
        for (reason, code) in cases {
            let status = status(reason);
            assert_eq!(status.code(), code, "{reason}");
            assert_eq!(
                status.metadata().get(REJECT_REASON_KEY).unwrap(),
                reason.as_str()
            );
        }
    }

    #[test]
    fn the_rejection_is_the_source() {
        let status = status(RejectReason::Closed);
        let source = std::error::Error::source(&status).unwrap();
        let rejected = source.downcast_ref::<Rejected>().unwrap();
        assert_eq!(rejected.reason(), RejectReason::Closed);
    }
}
