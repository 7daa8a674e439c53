//! Creates batched across requests: those that arrive while this instance's batchers
//! are busy are taken together and go through `create::run` as one transaction. A lone
//! request is a batch of one: nothing waits for company. With `otp.create_batchers = 0`
//! there is no queue and each create calls `create::run` itself.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use super::create::{self, Job, Reply};
use super::deps::Deps;
use crate::failure::Failure;

struct Queued {
    job: Job,
    reply: oneshot::Sender<Reply>,
}

/// The queue the service hands creates to.
pub struct CreateQueue {
    sender: mpsc::Sender<Queued>,
    receiver: Arc<Mutex<mpsc::Receiver<Queued>>>,
}

impl CreateQueue {
    pub fn new(capacity: usize) -> CreateQueue {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        CreateQueue {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }

    /// Queues a create and waits for its batch's answer.
    pub(super) async fn submit(&self, job: Job) -> Reply {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Queued { job, reply }).await.is_err() {
            return Err(
                Failure::Unavailable(anyhow::anyhow!("the create batcher has stopped")).into(),
            );
        }
        answer.await.unwrap_or_else(|_| {
            Err(Failure::Unavailable(anyhow::anyhow!(
                "the create batcher stopped before answering"
            ))
            .into())
        })
    }
}

/// One batcher: takes what is queued (up to `max`), runs it, and again. Several run at
/// once, each on its own connection; while they are busy, arrivals queue up and make
/// the next batch larger.
pub async fn run(
    deps: Arc<Deps>,
    queue: Arc<CreateQueue>,
    max: usize,
    shutdown: CancellationToken,
) {
    let receiver = queue.receiver.clone();
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = receiver.lock().await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                queued = rx.recv() => match queued {
                    Some(q) => batch.push(q),
                    None => return,
                },
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
        }
        deps.funnel.create_batch(batch.len());
        let (jobs, replies): (Vec<Job>, Vec<oneshot::Sender<Reply>>) =
            batch.into_iter().map(|q| (q.job, q.reply)).unzip();
        for (reply, answer) in replies.into_iter().zip(create::run(&deps, jobs).await) {
            let _ = reply.send(answer);
        }
    }
}
