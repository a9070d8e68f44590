//! Deferred accept on HTTP listeners (`TCP_DEFER_ACCEPT`, see `listener::defer_accept`):
//! the kernel hands a connection over only once its first bytes came. Raw TCP
//! listeners, where the server may speak first, are shown to accept at once by
//! `e2e_l4`'s `echo_through_the_proxy` (its upstream greets first); the listener key
//! that turns it off, by the unit test beside `listener::defer_accept`.

use crate::*;
use gatehouse_test_support::raw::read_response;
use gatehouse_test_support::TestGateway;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

async fn served(s: &mut TcpStream) {
    s.write_all(GET).await.unwrap();
    let r = read_response(s).await.expect("a response");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
}

/// A client that connected and said nothing is not the gateway's yet: one that came
/// after it and spoke is accepted and served while the first is not (the kernel's
/// queue is first come, first served, so without deferring the first would have been
/// accepted before it), and the first is served as soon as it speaks.
#[tokio::test]
async fn a_connection_is_accepted_once_its_client_speaks() {
    let gw = TestGateway::start(&local_gateway("")).await;
    let accepted = || gw.gw.snapshot().listeners["web"].connections.get();
    let mut silent = TcpStream::connect(gw.addr("web")).await.unwrap();
    let mut speaking = TcpStream::connect(gw.addr("web")).await.unwrap();
    served(&mut speaking).await;
    assert_eq!(accepted(), 1, "only the client that spoke");
    served(&mut silent).await;
    assert_eq!(accepted(), 2);
}
