//! Gatehouse's own upstream HTTP/1.1 client, built up in parts (issue 10's decision:
//! hyper's client costs ~13k instructions a request in its dispatch channel and
//! connection task). This first part is the response reader, with no I/O: [`decode`]
//! turns bytes read from an upstream into a response head and body frames, by
//! `httparse` for the head, chunk sizes and trailers, and by RFC 9112 sections 6-7 for
//! the framing. It is checked against hyper's client at every byte split (the
//! `h1_reader` differential test) and fuzzed (`fuzz/fuzz_targets/h1_response.rs`);
//! the connection and pool that drive it from the request's own task come next.

pub mod decode;
