//! The `Date` of responses Gatehouse sends on HTTP/2 (hyper adds it on HTTP/1): the
//! IMF-fixdate text made at most once a second per thread, so a response pays a clock
//! read and a refcount.

use http::header::{self, HeaderMap, HeaderValue};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static NOW: RefCell<(u64, HeaderValue)> = const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// Adds `Date` (RFC 9110 6.6.1) when the response has none.
pub fn ensure(headers: &mut HeaderMap) {
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, now());
    }
}

/// The current time as a `Date` value.
pub fn now() -> HeaderValue {
    let t = SystemTime::now();
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(t);
            c.1 = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
            c.0 = secs;
        }
        c.1.clone()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_an_imf_fixdate() {
        let v = super::now();
        let s = v.to_str().unwrap();
        assert_eq!(s.len(), 29, "{s}");
        assert!(s.ends_with(" GMT"), "{s}");
        assert!(httpdate::parse_http_date(s).is_ok());
    }
}
