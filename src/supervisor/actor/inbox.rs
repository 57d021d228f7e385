//! The actor's requests, taken while a launch is under way as well as
//! between: a start that comes during a launch waits for its outcome, a
//! stop cancels it and is answered once the launch has undone itself.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::super::{Order, ProcessError};
use super::{Outcome, Reply};

pub(super) struct Inbox {
    rx: mpsc::Receiver<Order>,
    /// Every handle is gone: stop and end the task.
    closed: bool,
    /// Starts that came during the launch under way.
    waiting: Vec<Reply>,
    /// The stop that cancelled the launch under way.
    stop_reply: Option<oneshot::Sender<()>>,
}

impl Inbox {
    pub(super) fn new(rx: mpsc::Receiver<Order>) -> Self {
        Self {
            rx,
            closed: false,
            waiting: Vec::new(),
            stop_reply: None,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next request; None (and closed) once every handle is gone.
    pub(super) async fn recv(&mut self) -> Option<Order> {
        let request = self.rx.recv().await;
        self.closed |= request.is_none();
        request
    }

    /// Runs `work` while taking requests: a start waits for the launch's
    /// outcome, a stop or the end of every handle cancels it (`None`).
    pub(super) async fn during<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return Some(result),
                request = self.rx.recv() => match request {
                    Some(Order::Start(reply) | Order::Restore(reply)) => self.waiting.push(reply),
                    Some(Order::Stop(reply)) => {
                        self.stop_reply = Some(reply);
                        return None;
                    }
                    None => {
                        self.closed = true;
                        return None;
                    }
                },
            }
        }
    }

    /// Answers whoever waited for the launch that ended with `outcome`.
    pub(super) fn answer(&mut self, outcome: &Outcome) {
        for reply in self.waiting.drain(..) {
            let _ = reply.send(match outcome {
                Outcome::Mounted => Ok(()),
                Outcome::Failed(e) => Err(e.clone()),
                Outcome::Cancelled => Err(ProcessError::Stopped),
            });
        }
        if let Some(reply) = self.stop_reply.take() {
            let _ = reply.send(());
        }
    }
}
