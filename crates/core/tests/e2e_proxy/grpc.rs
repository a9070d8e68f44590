//! gRPC through the gateway with tonic on both ends (messages defined by hand with
//! prost, no protoc): unary and server-streaming calls, request and response metadata,
//! and grpc-status in trailers, both OK and an error after streamed messages. Over h2c
//! (tonic's own transport) and over a TLS listener with ALPN h2 to a TLS upstream.

use super::common::QUIET;
use futures_util::future::BoxFuture;
use gatehouse_test_support::certs::TestCa;
use gatehouse_test_support::upstream::TestBody;
use gatehouse_test_support::{send_body, TestGateway, TlsClient, Upstream, UpstreamOptions};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::task::{Context, Poll};
use tonic::metadata::MetadataValue;
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Hello {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Reply {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint32, tag = "2")]
    pub index: u32,
}

pub(super) const SAY: &str = "/test.Greeter/Say";
const COUNT: &str = "/test.Greeter/Count";
pub(super) const ECHO: &str = "/test.Greeter/Echo";

/// Unary: greets by name, echoing the `x-client` metadata; `missing` is NOT_FOUND.
struct Say;

impl UnaryService<Hello> for Say {
    type Response = Reply;
    type Future = std::future::Ready<Result<tonic::Response<Reply>, Status>>;

    fn call(&mut self, req: tonic::Request<Hello>) -> Self::Future {
        let client = req
            .metadata()
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let hello = req.into_inner();
        if hello.name == "missing" {
            return std::future::ready(Err(Status::not_found("no such name")));
        }
        let mut resp = tonic::Response::new(Reply {
            text: format!("hello {} from {client}", hello.name),
            index: 0,
        });
        resp.metadata_mut()
            .insert("x-greeter", MetadataValue::from_static("yes"));
        std::future::ready(Ok(resp))
    }
}

/// Server streaming: `count` replies; for the name `fail` the stream then ends with
/// ABORTED and an `x-why` trailer.
struct Count;

type ReplyStream = futures_util::stream::Iter<std::vec::IntoIter<Result<Reply, Status>>>;

impl ServerStreamingService<Hello> for Count {
    type Response = Reply;
    type ResponseStream = ReplyStream;
    type Future = std::future::Ready<Result<tonic::Response<ReplyStream>, Status>>;

    fn call(&mut self, req: tonic::Request<Hello>) -> Self::Future {
        let hello = req.into_inner();
        let mut items: Vec<Result<Reply, Status>> = (0..hello.count)
            .map(|i| {
                Ok(Reply {
                    text: format!("{} #{i}", hello.name),
                    index: i,
                })
            })
            .collect();
        if hello.name == "fail" {
            let mut st = Status::aborted("stopped on purpose");
            st.metadata_mut()
                .insert("x-why", MetadataValue::from_static("because"));
            items.push(Err(st));
        }
        std::future::ready(Ok(tonic::Response::new(futures_util::stream::iter(items))))
    }
}

/// Bidirectional streaming: each message is answered as it arrives, for as long as
/// the client keeps the stream open.
struct Echo;

type EchoStream = futures_util::stream::BoxStream<'static, Result<Reply, Status>>;

impl tonic::server::StreamingService<Hello> for Echo {
    type Response = Reply;
    type ResponseStream = EchoStream;
    type Future = std::future::Ready<Result<tonic::Response<EchoStream>, Status>>;

    fn call(&mut self, req: tonic::Request<tonic::Streaming<Hello>>) -> Self::Future {
        use futures_util::StreamExt;
        let replies = req.into_inner().map(|m| {
            m.map(|h| Reply {
                text: format!("echo {}", h.name),
                index: h.count,
            })
        });
        std::future::ready(Ok(tonic::Response::new(replies.boxed())))
    }
}

/// The gRPC server, as an HTTP/2 upstream handler.
pub(super) async fn greeter(req: http::Request<Incoming>) -> http::Response<TestBody> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Hello>::default());
    let resp = match req.uri().path() {
        SAY => grpc.unary(Say, req).await,
        COUNT => grpc.server_streaming(Count, req).await,
        ECHO => grpc.streaming(Echo, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    };
    resp.map(send_body)
}

fn config(listener: &str, upstream: std::net::SocketAddr, upstream_tls: &str) -> String {
    format!(
        "{QUIET}{listener}[[routes]]\nname = \"grpc\"\nupstream = \"greeter\"\n\
         match.headers = [{{ name = \"content-type\", regex = \"application/grpc.*\" }}]\n\n\
         [[upstreams]]\nname = \"greeter\"\nendpoints = [\"{upstream}\"]\nprotocol = \"http2\"\n{upstream_tls}\n"
    )
}

/// Runs the unary and streaming calls through `client` and checks every result.
async fn exercise<T>(client: &mut tonic::client::Grpc<T>, up: &Upstream)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    T::Error: Into<tonic::codegen::StdError>,
{
    // Unary, OK: the reply, header metadata, and grpc-status 0 from the trailers (tonic
    // merges trailers into the unary response's metadata).
    let mut req = tonic::Request::new(Hello {
        name: "ada".into(),
        count: 0,
    });
    req.metadata_mut()
        .insert("x-client", MetadataValue::from_static("e2e"));
    client.ready().await.map_err(Into::into).unwrap();
    let resp = client
        .unary(
            req,
            PathAndQuery::from_static(SAY),
            ProstCodec::<Hello, Reply>::default(),
        )
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-greeter").unwrap(), "yes");
    assert_eq!(
        resp.metadata()
            .get("grpc-status")
            .expect("trailers did not arrive"),
        "0",
        "trailers did not arrive"
    );
    assert_eq!(resp.into_inner().text, "hello ada from e2e");
    let seen = up.last();
    assert_eq!(seen.headers["te"], "trailers");
    assert_eq!(seen.headers["content-type"], "application/grpc");
    assert_eq!(seen.version, http::Version::HTTP_2);

    // Unary, error: the status and message reach the client.
    let req = tonic::Request::new(Hello {
        name: "missing".into(),
        count: 0,
    });
    client.ready().await.map_err(Into::into).unwrap();
    let err = client
        .unary::<_, Reply, _>(req, PathAndQuery::from_static(SAY), ProstCodec::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such name");

    // Server streaming, OK: every message in order, then the trailers.
    let req = tonic::Request::new(Hello {
        name: "n".into(),
        count: 5,
    });
    client.ready().await.map_err(Into::into).unwrap();
    let mut stream = client
        .server_streaming::<_, Reply, _>(
            req,
            PathAndQuery::from_static(COUNT),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        let m = stream.message().await.unwrap().expect("stream ended early");
        assert_eq!((m.index, m.text.as_str()), (i, format!("n #{i}").as_str()));
    }
    assert!(stream.message().await.unwrap().is_none());
    let trailers = stream.trailers().await.unwrap().expect("no trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // Server streaming ending in an error: the messages, then the status from the
    // trailers with its metadata.
    let req = tonic::Request::new(Hello {
        name: "fail".into(),
        count: 2,
    });
    client.ready().await.map_err(Into::into).unwrap();
    let mut stream = client
        .server_streaming::<_, Reply, _>(
            req,
            PathAndQuery::from_static(COUNT),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().index, 0);
    assert_eq!(stream.message().await.unwrap().unwrap().index, 1);
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(err.message(), "stopped on purpose");
    assert_eq!(err.metadata().get("x-why").unwrap(), "because");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_with_tonic_transport() {
    let opts = UpstreamOptions {
        http2_only: true,
        tls: None,
    };
    let up = Upstream::start(opts, greeter).await;
    let gw = TestGateway::start(&config(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n",
        up.addr,
        "",
    ))
    .await;
    let channel = tonic::transport::Channel::from_shared(gw.url("web", ""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    exercise(&mut client, &up).await;
}

/// A tonic transport over one hyper HTTP/2 connection, for TLS (the tonic features
/// in use have no TLS of their own).
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFuture<'static, Result<Self::Response, hyper::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let fut = self.0.send_request(req);
        Box::pin(fut)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_to_a_tls_upstream() {
    let ca = TestCa::new();
    let gw_leaf = ca.leaf("gw", &["grpc.test"]);
    let up_leaf = ca.leaf("up", &["127.0.0.1"]);
    let opts = UpstreamOptions {
        http2_only: true,
        tls: Some((up_leaf.cert_pem.clone(), up_leaf.key_pem.clone())),
    };
    let up = Upstream::start(opts, greeter).await;
    let gw = TestGateway::start(&config(
        &super::common::tls_listener(&gw_leaf),
        up.addr,
        &format!("[upstreams.tls]\nca = \"{}\"\n", ca.ca_path.display()),
    ))
    .await;
    let tls = TlsClient {
        alpn: &["h2"],
        ..TlsClient::new(&ca.cert_pem)
    };
    let s = tls.connect(gw.addr("web"), "grpc.test").await.unwrap();
    let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let origin = format!("https://grpc.test:{}", gw.addr("web").port());
    let mut client = tonic::client::Grpc::with_origin(H2(tx), origin.parse().unwrap());
    exercise(&mut client, &up).await;
}
