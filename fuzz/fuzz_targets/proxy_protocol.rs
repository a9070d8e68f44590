//! The PROXY protocol reader (v1 and v2) on any bytes: incomplete, a header, or an
//! error, never a panic; a header's length never runs past the input.
#![no_main]

use gatehouse_core::proxy_protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peer = "192.0.2.1:4000".parse().unwrap_or_else(|_| unreachable!());
    if let Ok(Some((len, _))) = proxy_protocol::parse(data, peer) {
        assert!(len <= data.len());
    }
});
