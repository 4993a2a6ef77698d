//! [`RejectionResponse`]: how the server layer answers a request the limiter refused.

use core::fmt::Write as _;
use core::time::Duration;

use std::string::{String, ToString};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::limit::{RejectReason, Rejected};

/// How the server layer answers a refused request: a **response** (never an error, which
/// hyper would turn into a reset connection or stream), with a status per reason, a JSON body
///
/// ```json
/// {"error":{"type":"queue_full","message":"limiter `chat` rejected the request: queue_full"}}
/// ```
///
/// and, only if configured, a `Retry-After` header.
///
/// | reason | default status | [`service_unavailable`](Self::service_unavailable) preset |
/// |---|---|---|
/// | `queue_full` | 429 Too Many Requests | 503 |
/// | `queue_timeout` | 429 Too Many Requests | 503 |
/// | `too_many_keys` | 503 Service Unavailable | 503 |
/// | `closed` | 503 Service Unavailable | 503 |
/// | `unavailable` (a fleet limiter's Redis unreachable, fail closed) | 503 Service Unavailable | 503 |
/// | `deadline_exceeded` | 504 Gateway Timeout | 504 |
///
/// There is deliberately **no `Retry-After` by default**: a queue cannot predict when a slot
/// frees, a fixed hint invites synchronised retries, and a gateway's upstream-cooldown logic
/// must not mistake a local rejection for an upstream 429.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use fairgate::http::RejectionResponse;
/// use fairgate::limit::{RejectReason, Rejected};
///
/// let full = Rejected::new(RejectReason::QueueFull, Duration::ZERO, "chat".into());
/// let default = RejectionResponse::default().render(&full);
/// assert_eq!(default.status(), 429);
/// assert!(default.headers().get("retry-after").is_none());
/// assert!(std::str::from_utf8(default.body()).unwrap().starts_with(r#"{"error":{"type":"queue_full","#));
///
/// let shed = RejectionResponse::service_unavailable()
///     .retry_after(Some(Duration::from_secs(2)))
///     .render(&full);
/// assert_eq!(shed.status(), 503);
/// assert_eq!(shed.headers()["retry-after"], "2");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectionResponse {
    queue_full: StatusCode,
    queue_timeout: StatusCode,
    too_many_keys: StatusCode,
    closed: StatusCode,
    unavailable: StatusCode,
    deadline_exceeded: StatusCode,
    retry_after: Option<HeaderValue>,
}

impl Default for RejectionResponse {
    /// 429 for `queue_full` and `queue_timeout` (the limit is the caller's, e.g. per
    /// channel), 503 for `too_many_keys`, `closed` and `unavailable`, 504 for
    /// `deadline_exceeded`; no `Retry-After`.
    fn default() -> Self {
        RejectionResponse {
            queue_full: StatusCode::TOO_MANY_REQUESTS,
            queue_timeout: StatusCode::TOO_MANY_REQUESTS,
            too_many_keys: StatusCode::SERVICE_UNAVAILABLE,
            closed: StatusCode::SERVICE_UNAVAILABLE,
            unavailable: StatusCode::SERVICE_UNAVAILABLE,
            deadline_exceeded: StatusCode::GATEWAY_TIMEOUT,
            retry_after: None,
        }
    }
}

impl RejectionResponse {
    /// The preset for a server-wide limit: 503 for every reason but `deadline_exceeded`
    /// (504); no `Retry-After`.
    ///
    /// ```
    /// use fairgate::http::RejectionResponse;
    /// use fairgate::limit::RejectReason;
    /// let preset = RejectionResponse::service_unavailable();
    /// assert_eq!(preset.status_for(RejectReason::QueueTimeout), 503);
    /// assert_eq!(preset.status_for(RejectReason::DeadlineExceeded), 504);
    /// ```
    pub fn service_unavailable() -> Self {
        RejectionResponse {
            queue_full: StatusCode::SERVICE_UNAVAILABLE,
            queue_timeout: StatusCode::SERVICE_UNAVAILABLE,
            ..RejectionResponse::default()
        }
    }

    /// Answers rejections of `reason` with `status`.
    ///
    /// ```
    /// use fairgate::http::RejectionResponse;
    /// use fairgate::limit::RejectReason;
    /// use http::StatusCode;
    /// let r = RejectionResponse::default().status(RejectReason::QueueTimeout, StatusCode::GATEWAY_TIMEOUT);
    /// assert_eq!(r.status_for(RejectReason::QueueTimeout), 504);
    /// assert_eq!(r.status_for(RejectReason::QueueFull), 429);
    /// ```
    pub fn status(mut self, reason: RejectReason, status: StatusCode) -> Self {
        *self.slot(reason) = status;
        self
    }

    /// Adds `Retry-After: <whole seconds, rounded up>` to every rejection (`None`, the
    /// default, sends none).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fairgate::http::RejectionResponse;
    /// let r = RejectionResponse::default().retry_after(Some(Duration::from_millis(1500)));
    /// assert_eq!(r.retry_after_header().unwrap(), "2");
    /// ```
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after.map(|after| {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            HeaderValue::from(secs)
        });
        self
    }

    /// The status answered for `reason`.
    ///
    /// ```
    /// use fairgate::http::RejectionResponse;
    /// use fairgate::limit::RejectReason;
    /// assert_eq!(RejectionResponse::default().status_for(RejectReason::Closed), 503);
    /// assert_eq!(RejectionResponse::default().status_for(RejectReason::Unavailable), 503);
    /// ```
    pub fn status_for(&self, reason: RejectReason) -> StatusCode {
        match reason {
            RejectReason::QueueFull => self.queue_full,
            RejectReason::QueueTimeout => self.queue_timeout,
            RejectReason::DeadlineExceeded => self.deadline_exceeded,
            RejectReason::TooManyKeys => self.too_many_keys,
            RejectReason::Unavailable => self.unavailable,
            // `Closed` and any reason added later.
            _ => self.closed,
        }
    }

    /// The `Retry-After` value sent with rejections, if any.
    ///
    /// ```
    /// assert!(fairgate::http::RejectionResponse::default().retry_after_header().is_none());
    /// ```
    pub fn retry_after_header(&self) -> Option<&HeaderValue> {
        self.retry_after.as_ref()
    }

    /// The response for `rejected`: its status, `content-type: application/json`, the
    /// optional `Retry-After`, and the JSON body.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fairgate::http::RejectionResponse;
    /// use fairgate::limit::{RejectReason, Rejected};
    /// let timeout = Rejected::new(RejectReason::QueueTimeout, Duration::from_millis(80), "chat".into());
    /// let response = RejectionResponse::default().render(&timeout);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// let body: &[u8] = response.body();
    /// assert!(body.starts_with(br#"{"error":{"type":"queue_timeout","message":""#));
    /// ```
    pub fn render(&self, rejected: &Rejected) -> Response<Bytes> {
        let reason = rejected.reason();
        let mut response = Response::new(json_body(rejected));
        *response.status_mut() = self.status_for(reason);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(after) = &self.retry_after {
            headers.insert(RETRY_AFTER, after.clone());
        }
        response
    }

    fn slot(&mut self, reason: RejectReason) -> &mut StatusCode {
        match reason {
            RejectReason::QueueFull => &mut self.queue_full,
            RejectReason::QueueTimeout => &mut self.queue_timeout,
            RejectReason::DeadlineExceeded => &mut self.deadline_exceeded,
            RejectReason::TooManyKeys => &mut self.too_many_keys,
            RejectReason::Unavailable => &mut self.unavailable,
            _ => &mut self.closed,
        }
    }
}

/// `{"error":{"type":"<reason>","message":"<Display of the rejection>"}}`, the message
/// JSON-escaped (it contains the limiter's name, which may come from configuration).
fn json_body(rejected: &Rejected) -> Bytes {
    let message = rejected.to_string();
    let mut out = String::with_capacity(48 + message.len());
    out.push_str(r#"{"error":{"type":""#);
    out.push_str(rejected.reason().as_str());
    out.push_str(r#"","message":""#);
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push_str(r#""}}"#);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_escaped() {
        let rejected = Rejected::new(
            RejectReason::QueueFull,
            Duration::ZERO,
            "a\"b\\c\n\u{1}".into(),
        );
        let body = json_body(&rejected);
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains(r#"a\"b\\c\n\u0001"#), "{text}");
        assert!(text.starts_with(r#"{"error":{"type":"queue_full","message":""#));
        assert!(text.ends_with(r#""}}"#));
    }
}
