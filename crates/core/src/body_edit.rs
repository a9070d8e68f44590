//! Streaming body edits: the seam a filter uses to change a body as it passes, chunk
//! in and chunk out, holding only what an edit needs to see across a chunk boundary.
//! [`Edited`] runs a message's edits over the frames of any body; trailers pass after
//! the edits have given what they held back.

use crate::body::BodyError;
use bytes::{Bytes, BytesMut};
use http_body::Frame;
use std::task::{ready, Context, Poll};

/// One message's streaming edit, made by a filter for that message.
pub trait ChunkEdit: Send + Sync {
    /// The bytes to pass on for `chunk`; empty when it holds them for the next one.
    fn chunk(&mut self, chunk: Bytes) -> Result<Bytes, BodyError>;

    /// What is left to pass on when the body has ended.
    fn end(&mut self) -> Result<Bytes, BodyError> {
        Ok(Bytes::new())
    }
}

/// A message's edits in the order they run, and whether the body has ended.
pub struct Edited {
    edits: Vec<Box<dyn ChunkEdit>>,
    ended: bool,
    /// Trailers held until the edits' tail is out.
    trailers: Option<Frame<Bytes>>,
}

impl Edited {
    pub fn new(edits: Vec<Box<dyn ChunkEdit>>) -> Self {
        Edited {
            edits,
            ended: false,
            trailers: None,
        }
    }

    /// Whether every frame, the edits' tail included, is out.
    pub fn is_end_stream(&self) -> bool {
        self.ended && self.trailers.is_none()
    }

    fn chunk(&mut self, mut b: Bytes) -> Result<Bytes, BodyError> {
        for e in &mut self.edits {
            if b.is_empty() {
                break;
            }
            b = e.chunk(b)?;
        }
        Ok(b)
    }

    /// Ends each edit in order; what one gives back runs through the ones after it.
    fn end(&mut self) -> Result<Bytes, BodyError> {
        let mut carried = Bytes::new();
        for e in &mut self.edits {
            if !carried.is_empty() {
                carried = e.chunk(carried)?;
            }
            let tail = e.end()?;
            if !tail.is_empty() {
                carried = join(carried, tail);
            }
        }
        Ok(carried)
    }

    /// The next frame of the body `poll_inner` gives, edited.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut poll_inner: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            if self.ended {
                return Poll::Ready(self.trailers.take().map(Ok));
            }
            let frame = match ready!(poll_inner(cx)) {
                Some(Ok(f)) => f,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.ended = true;
                    return Poll::Ready(self.tail().transpose());
                }
            };
            match frame.into_data() {
                Ok(d) => match self.chunk(d) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
                Err(trailers) => {
                    self.ended = true;
                    self.trailers = Some(trailers);
                    if let Some(tail) = self.tail().transpose() {
                        return Poll::Ready(Some(tail));
                    }
                }
            }
        }
    }

    /// The edits' tail as a data frame, `None` when they held nothing back.
    fn tail(&mut self) -> Result<Option<Frame<Bytes>>, BodyError> {
        let tail = self.end()?;
        Ok((!tail.is_empty()).then(|| Frame::data(tail)))
    }
}

fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(&a);
    out.extend_from_slice(&b);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Holds every byte until the end, then gives them upper-cased.
    struct Hold(Vec<u8>);
    impl ChunkEdit for Hold {
        fn chunk(&mut self, c: Bytes) -> Result<Bytes, BodyError> {
            self.0.extend_from_slice(&c);
            Ok(Bytes::new())
        }
        fn end(&mut self) -> Result<Bytes, BodyError> {
            Ok(Bytes::from(
                std::mem::take(&mut self.0).to_ascii_uppercase(),
            ))
        }
    }

    /// Doubles every byte as it passes.
    struct Double;
    impl ChunkEdit for Double {
        fn chunk(&mut self, c: Bytes) -> Result<Bytes, BodyError> {
            Ok(c.iter().flat_map(|b| [*b, *b]).collect::<Vec<u8>>().into())
        }
    }

    fn run(edits: Vec<Box<dyn ChunkEdit>>, frames: Vec<Frame<Bytes>>) -> Vec<Frame<Bytes>> {
        let mut e = Edited::new(edits);
        let mut frames: VecDeque<_> = frames.into();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(f)) =
            e.poll(&mut cx, |_| Poll::Ready(frames.pop_front().map(Ok)))
        {
            out.push(f.unwrap());
        }
        assert!(e.is_end_stream());
        out
    }

    #[test]
    fn a_held_tail_runs_through_the_edits_after_it_before_the_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let out = run(
            vec![Box::new(Hold(Vec::new())), Box::new(Double)],
            vec![
                Frame::data(Bytes::from("ab")),
                Frame::data(Bytes::from("c")),
                Frame::trailers(trailers),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data_ref().unwrap(), &Bytes::from("AABBCC"));
        assert!(out[1].trailers_ref().is_some());
    }

    #[test]
    fn chunks_pass_as_they_come_when_nothing_is_held() {
        let out = run(
            vec![Box::new(Double)],
            vec![Frame::data(Bytes::from("a")), Frame::data(Bytes::from("b"))],
        );
        let data: Vec<&Bytes> = out.iter().filter_map(|f| f.data_ref()).collect();
        assert_eq!(data, [&Bytes::from("aa"), &Bytes::from("bb")]);
    }
}
