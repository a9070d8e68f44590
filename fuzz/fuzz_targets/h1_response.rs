//! The own HTTP/1.1 response reader (`http::h1::decode`) on arbitrary upstream bytes:
//! it never panics, it reads the same whether the bytes come at once or cut in two (the
//! first input byte chooses where, and whether the request was HEAD; the cut reading
//! finds the field names the whole one left, as a connection's next response does),
//! and a body it passes is framed as its head said: exactly Content-Length bytes, never
//! more than arrived, and nothing at all where the response may have no body.
#![no_main]

use gatehouse_core::http::h1::decode::{read_whole_with, Framing, Names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let head_request = first & 0x80 != 0;
    let at = usize::from(first & 0x7f).min(bytes.len());
    let mut names = Names::default();
    let whole = read_whole_with(&[bytes], head_request, &mut names);
    let (a, b) = bytes.split_at(at);
    let cut = read_whole_with(&[a, b], head_request, &mut names);
    assert_eq!(format!("{whole:?}"), format!("{cut:?}"), "cut at {at}");
    let Ok(w) = whole else { return };
    assert!(w.body.len() + w.rest <= bytes.len());
    match w.head.framing {
        Framing::None => assert!(w.body.is_empty()),
        Framing::Length(n) => assert_eq!(w.body.len() as u64, n),
        Framing::Chunked => assert!(w.body.len() < bytes.len()),
        Framing::UntilClose => assert_eq!(w.rest, 0),
    }
});
