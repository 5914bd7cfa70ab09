//! Group commit: the writes of many concurrent callers in one transaction.
//!
//! Every submit and every delivery ends in a database commit. One transaction each makes the
//! database's commit (SQLite's single writer, PostgreSQL's WAL flush and round trips) the
//! limit on the rate, so callers hand their writes to committer tasks instead, one per
//! connection the store writes with. A free committer takes whatever has gathered (up to
//! `max_batch`) and commits it in one transaction. Alone, a write is committed at once (a batch
//! of one); under load, batches grow by themselves while the committers work in parallel.
//!
//! A failed batch is retried one request at a time, so one bad request cannot take the others'
//! commits down with it, and every caller gets its own answer.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;

/// What a committer commits: a batch of requests in one transaction, one answer each.
#[async_trait::async_trait]
pub trait Commit: Send + Sync + 'static {
    /// One caller's write.
    type Request: Send + Sync + 'static;
    /// What the caller learns.
    type Answer: Send + 'static;

    /// Commits `requests` together, answering each in order; an error commits none.
    async fn commit(&self, requests: &[Self::Request]) -> Result<Vec<Self::Answer>, StoreError>;
}

type Waiting<C> = (
    <C as Commit>::Request,
    oneshot::Sender<Result<<C as Commit>::Answer, StoreError>>,
);

/// The handle callers commit through; the committer tasks run while a handle exists.
pub struct Committer<C: Commit> {
    sender: mpsc::Sender<Waiting<C>>,
}

impl<C: Commit> Clone for Committer<C> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<C: Commit> std::fmt::Debug for Committer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl<C: Commit> Committer<C> {
    /// Starts `tasks` committer tasks on the current tokio runtime, each committing up to
    /// `max_batch` requests at a time.
    pub fn start(commit: C, tasks: usize, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (sender, receiver) = mpsc::channel(max_batch * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        let commit = Arc::new(commit);
        for _ in 0..tasks.max(1) {
            tokio::spawn(run(commit.clone(), receiver.clone(), max_batch));
        }
        Self { sender }
    }

    /// Commits `request` (with whatever else is waiting) and answers for it.
    pub async fn commit(&self, request: C::Request) -> Result<C::Answer, StoreError> {
        let stopped = || StoreError::Unavailable("the committer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((request, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One committer: takes a batch (waiting for the others to take theirs), commits it, answers.
async fn run<C: Commit>(
    commit: Arc<C>,
    receiver: Arc<Mutex<mpsc::Receiver<Waiting<C>>>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        if receiver.lock().await.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let (requests, replies): (Vec<C::Request>, Vec<_>) = batch.drain(..).unzip();
        match commit.commit(&requests).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(_) if requests.len() > 1 => {
                for (request, reply) in requests.iter().zip(replies) {
                    let answer = commit.commit(std::slice::from_ref(request)).await.and_then(
                        |mut answers| {
                            answers.pop().ok_or_else(|| {
                                StoreError::Unavailable("the commit gave no answer".into())
                            })
                        },
                    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles each request; a batch holding 13 fails as a whole, as a transaction would.
    #[derive(Default)]
    struct Doubling {
        batches: std::sync::Mutex<Vec<Vec<u32>>>,
    }

    #[async_trait::async_trait]
    impl Commit for Arc<Doubling> {
        type Request = u32;
        type Answer = u32;

        async fn commit(&self, requests: &[u32]) -> Result<Vec<u32>, StoreError> {
            self.batches.lock().unwrap().push(requests.to_vec());
            if requests.contains(&13) {
                return Err(StoreError::Refused("13 is refused".into()));
            }
            Ok(requests.iter().map(|request| request * 2).collect())
        }
    }

    #[tokio::test]
    async fn a_failed_group_is_retried_one_by_one_so_only_the_bad_request_fails() {
        let doubling = Arc::new(Doubling::default());
        let committer = Committer::start(doubling.clone(), 1, 64);
        // Every request is waiting before the one committer task runs: one group.
        let answers =
            futures_util::future::join_all([1, 2, 13, 4].map(|request| committer.commit(request)))
                .await;
        let answers: Vec<Result<u32, String>> = answers
            .into_iter()
            .map(|answer| answer.map_err(|error| error.to_string()))
            .collect();
        assert_eq!(
            answers,
            [
                Ok(2),
                Ok(4),
                Err("the database refused the data: 13 is refused".to_owned()),
                Ok(8)
            ]
        );
        assert_eq!(
            *doubling.batches.lock().unwrap(),
            [vec![1, 2, 13, 4], vec![1], vec![2], vec![13], vec![4]],
            "the group, then each request alone"
        );
    }

    #[tokio::test]
    async fn requests_that_wait_together_are_committed_together() {
        let doubling = Arc::new(Doubling::default());
        let committer = Committer::start(doubling.clone(), 1, 3);
        let answers =
            futures_util::future::join_all((1..=5).map(|request| committer.commit(request))).await;
        assert!(answers.iter().all(Result::is_ok));
        assert_eq!(
            *doubling.batches.lock().unwrap(),
            [vec![1, 2, 3], vec![4, 5]],
            "at most max_batch in one"
        );
    }
}
