//! The `grpc-timeout` request header: the caller's remaining budget (gRPC over HTTP/2 spec:
//! at most 8 ASCII digits and a unit, `H` `M` `S` `m` `u` `n`). tonic's parser is private,
//! so the layers read and write it themselves.

use std::format;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest value the spec allows before a coarser unit is needed (8 digits).
const MAX_DIGITS_VALUE: u128 = 99_999_999;

/// The budget in a `grpc-timeout` value; `None` for a malformed one (ignored, as tonic does).
pub(crate) fn parse(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: fits a u64 with room for the multiplications below.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller's deadline: `now()` plus the request's `grpc-timeout`, if it has a valid one
/// (the clock is read only then).
pub(crate) fn deadline(headers: &HeaderMap, now: impl FnOnce() -> Instant) -> Option<Instant> {
    let budget = parse(headers.get(GRPC_TIMEOUT)?)?;
    now().checked_add(budget)
}

/// `budget` as a header value in the most precise unit that fits 8 digits (tonic's choice).
pub(crate) fn encode(budget: Duration) -> HeaderValue {
    let candidates: [(u128, char); 6] = [
        (budget.as_nanos(), 'n'),
        (budget.as_micros(), 'u'),
        (budget.as_millis(), 'm'),
        (u128::from(budget.as_secs()), 'S'),
        (u128::from(budget.as_secs() / 60), 'M'),
        (u128::from(budget.as_secs() / 3600), 'H'),
    ];
    let (value, unit) = candidates
        .into_iter()
        .find(|(value, _)| *value <= MAX_DIGITS_VALUE)
        // A budget over 11 000 years: the largest value the header can say.
        .unwrap_or((MAX_DIGITS_VALUE, 'H'));
    HeaderValue::try_from(format!("{value}{unit}")).expect("digits and a unit are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<Duration> {
        parse(&HeaderValue::from_str(s).unwrap())
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parsed("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parsed("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parsed("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parsed("50m"), Some(Duration::from_millis(50)));
        assert_eq!(parsed("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parsed("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(
            parsed("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in ["", "m", "123", "123456789m", "12x", "-1m", "1.5S", " 1m"] {
            assert_eq!(parsed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encodes_in_the_finest_unit_that_fits() {
        assert_eq!(encode(Duration::from_nanos(5)), "5n");
        assert_eq!(encode(Duration::from_millis(50)), "50000000n");
        assert_eq!(encode(Duration::from_millis(500)), "500000u");
        assert_eq!(encode(Duration::from_secs(3600)), "3600000m");
        assert_eq!(encode(Duration::MAX), "99999999H");
        for budget in [1, 999, 123_456_789, 98_765_432_100] {
            let budget = Duration::from_micros(budget);
            let back = parse(&encode(budget)).unwrap();
            assert!(back <= budget && budget - back < budget / 1000 + Duration::from_nanos(1));
        }
    }

    #[test]
    fn deadline_is_now_plus_the_budget() {
        let now = Instant::now();
        let mut headers = HeaderMap::new();
        assert_eq!(
            deadline(&headers, || unreachable!("no header, no clock")),
            None
        );
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("20m"));
        assert_eq!(
            deadline(&headers, || now),
            Some(now + Duration::from_millis(20))
        );
    }
}
