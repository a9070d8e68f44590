//! Text replaced as bodies stream (`filter::replace`): for arbitrary patterns, body and
//! chunk boundaries, the streamed result equals the whole body's, and the pass never
//! panics. Input: pattern count (1-4), then per pattern a length byte and its bytes and
//! a length byte and its replacement, then split points, then the body.
#![no_main]

use gatehouse_core::filter::replace_chunks;
use libfuzzer_sys::fuzz_target;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Some(head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let Some(&[n]) = take(&mut data, 1) else { return };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for _ in 0..(n % 4 + 1) {
        let Some(&[len]) = take(&mut data, 1) else { return };
        let Some(from) = take(&mut data, usize::from(len % 8 + 1)) else { return };
        let Some(&[len]) = take(&mut data, 1) else { return };
        let Some(to) = take(&mut data, usize::from(len % 8)) else { return };
        let from = String::from_utf8_lossy(from).into_owned();
        if pairs.iter().any(|(f, _)| *f == from) {
            return;
        }
        pairs.push((from, String::from_utf8_lossy(to).into_owned()));
    }
    let Some(&[a, b]) = take(&mut data, 2) else { return };
    let body = data;
    let whole = replace_chunks(&pairs, &[body]).expect("patterns this small build");
    let (i, j) = {
        let len = body.len().max(1);
        let (x, y) = (usize::from(a) % len, usize::from(b) % len);
        (x.min(y).min(body.len()), x.max(y).min(body.len()))
    };
    let split = replace_chunks(&pairs, &[&body[..i], &body[i..j], &body[j..]]).unwrap();
    assert_eq!(split, whole, "split at {i} and {j} changed the result");
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(replace_chunks(&pairs, &bytewise).unwrap(), whole, "a byte at a time");
});
