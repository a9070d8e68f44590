//! [`Gated`]: a future that is polled only after its own waker fired.
//!
//! A connection's task wakes on every read and write, and `select!` polls every branch
//! on every wake. The side branches of a connection (the drain watch, the idle tick)
//! fire a few times in its life, yet polling them costs a lock and a timer check each
//! time: about 450 instructions a request (callgrind). Gated, a side branch costs one
//! flag check per wake and is polled in earnest only when something it waits on moved.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Wraps `fut` so that it is polled only when it asked to be (see the module docs).
pub struct Gated<F> {
    fut: Pin<Box<F>>,
    gate: Arc<Gate>,
    waker: Waker,
}

/// The inner future's waker: notes that the inner future wants a poll, then wakes the
/// task that polls the [`Gated`].
struct Gate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> Gated<F> {
    pub fn new(fut: F) -> Gated<F> {
        let gate = Arc::new(Gate {
            // The first poll must reach the inner future, so that it registers.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Gated {
            fut: Box::pin(fut),
            waker: Waker::from(gate.clone()),
            gate,
        }
    }
}

impl<F> Gated<F> {
    /// The inner future, to change it (a timer moved): the next poll reaches it, so
    /// that it registers again.
    pub fn rearm(&mut self) -> Pin<&mut F> {
        self.gate.woken.store(true, Ordering::Release);
        self.fut.as_mut()
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        this.fut
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set and it has been woken.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn polls_the_inner_future_only_after_its_waker_fired() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(std::sync::Mutex::new(None));
        let mut g = Gated::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: waker.clone(),
        });
        let task_woken = Arc::new(Flag::default());
        let task = Waker::from(task_woken.clone());
        let mut cx = Context::from_waker(&task);
        // First poll reaches the inner future; later ones do not, until it wakes.
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        for _ in 0..5 {
            assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        ready.store(true, Ordering::SeqCst);
        waker.lock().unwrap().take().unwrap().wake();
        assert!(task_woken.0.load(Ordering::SeqCst), "the task is woken too");
        assert!(Pin::new(&mut g).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}
