//! Gatehouse's own upstream HTTP/1.1 client (issue 10's decision: hyper's client costs
//! ~13k instructions a request in its dispatch channel and connection task). Two parts
//! have no I/O: [`decode`] turns bytes read from an upstream into a response head and
//! body frames (`httparse` for the head, chunk sizes and trailers; RFC 9112 6.3 for the
//! framing), and [`encode`] writes a request head and its body's framing as hyper's
//! client does. Each is checked against hyper's client (the `h1_reader` test at every
//! byte split, the `h1_writer` test byte for byte), and the reader is fuzzed
//! (`fuzz/fuzz_targets/h1_response.rs`). [`conn`] drives them on a socket from the
//! request's own task (docs/h1-client.md).

pub mod conn;
pub mod decode;
pub mod encode;
