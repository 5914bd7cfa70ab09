//! Group commit of delivery outcomes.
//!
//! Every delivery ends in a database commit. One transaction per delivery makes the database's
//! commit (SQLite's single writer, PostgreSQL's WAL flush) the limit on the delivery rate, so
//! deliveries hand their outcomes to committer tasks, one per connection the store writes
//! with. A free committer takes whatever has gathered (up to [`MAX_BATCH`]) and commits it in
//! one transaction. Alone, an outcome is committed at once (a batch of one); under load,
//! batches grow by themselves while the committers work in parallel.
//!
//! A failed batch is retried one outcome at a time, so one bad outcome cannot take the others'
//! commits down with it, and every delivery gets its own answer.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{Outcome, Store, StoreError};

/// Most outcomes in one transaction.
const MAX_BATCH: usize = 256;

type Request = (Outcome, oneshot::Sender<Result<bool, StoreError>>);

/// The handle deliveries commit through; the committer task runs while a handle exists.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    sender: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts `store.writers()` committer tasks on the current tokio runtime.
    pub(super) fn start(store: Arc<dyn Store>) -> Self {
        let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..store.writers().max(1) {
            tokio::spawn(run(store.clone(), receiver.clone()));
        }
        Self { sender }
    }

    /// Commits `outcome` (with whatever else is waiting). False: a newer claim took over and
    /// the outcome was refused.
    pub(super) async fn commit(&self, outcome: Outcome) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((outcome, reply))
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?
    }
}

/// One committer: takes a batch (waiting for the others to take theirs), commits it, answers.
async fn run(store: Arc<dyn Store>, receiver: Arc<Mutex<mpsc::Receiver<Request>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if receiver.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (outcomes, replies): (Vec<Outcome>, Vec<_>) = batch.drain(..).unzip();
        match store.finish_deliveries(&outcomes).await {
            Ok(committed) => {
                for (reply, committed) in replies.into_iter().zip(committed) {
                    let _ = reply.send(Ok(committed));
                }
            }
            Err(_) if outcomes.len() > 1 => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let answer = store
                        .finish_deliveries(std::slice::from_ref(&outcome))
                        .await
                        .map(|committed| committed.first().copied().unwrap_or(false));
                    let _ = reply.send(answer);
                }
            }
            Err(error) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}
