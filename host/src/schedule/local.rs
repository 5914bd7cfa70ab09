//! The in-process schedule of the embedded default: an ordered set of `(due, id)` and one of
//! `(lease expiry, id)`, behind a mutex, with a [`Notify`] that wakes the dispatcher when an id
//! is added (so it waits exactly until the next due time, never on a fixed poll).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::{Schedule, ScheduleError};
use crate::domain::ids::MessageId;

#[derive(Default)]
struct Index {
    /// `(due ms, id)`: waiting ids, earliest first.
    due: BTreeSet<(u64, MessageId)>,
    /// `(lease expiry ms, id)`: claimed ids, earliest expiry first.
    leased: BTreeSet<(u64, MessageId)>,
    /// Where each id is: `(in leased?, time, token)`.
    entries: HashMap<MessageId, Entry>,
}

struct Entry {
    time: u64,
    /// The lease token, while leased.
    token: Option<String>,
}

impl Index {
    fn unlink(&mut self, id: &MessageId) {
        if let Some(entry) = self.entries.remove(id) {
            let key = (entry.time, id.clone());
            if entry.token.is_some() {
                self.leased.remove(&key);
            } else {
                self.due.remove(&key);
            }
        }
    }

    fn insert_due(&mut self, id: &MessageId, due_ms: u64) {
        self.unlink(id);
        self.due.insert((due_ms, id.clone()));
        self.entries.insert(
            id.clone(),
            Entry {
                time: due_ms,
                token: None,
            },
        );
    }
}

/// The in-process schedule.
#[derive(Default)]
pub struct LocalSchedule {
    index: Mutex<Index>,
    changed: Notify,
}

impl LocalSchedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Schedule for LocalSchedule {
    async fn add(&self, id: &MessageId, due_ms: u64) -> Result<(), ScheduleError> {
        self.index
            .lock()
            .expect("schedule lock")
            .insert_due(id, due_ms);
        self.changed.notify_one();
        Ok(())
    }

    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError> {
        let mut index = self.index.lock().expect("schedule lock");
        for (id, due) in entries {
            index.insert_due(id, *due);
        }
        drop(index);
        self.changed.notify_one();
        Ok(())
    }

    async fn remove(&self, id: &MessageId) -> Result<(), ScheduleError> {
        self.index.lock().expect("schedule lock").unlink(id);
        Ok(())
    }

    async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
        token: &str,
    ) -> Result<Vec<MessageId>, ScheduleError> {
        let mut index = self.index.lock().expect("schedule lock");
        let mut claimed = Vec::new();
        while claimed.len() < max {
            let next = match (index.leased.first(), index.due.first()) {
                (Some(lease), _) if lease.0 <= now_ms => lease.clone(),
                (_, Some(due)) if due.0 <= now_ms => due.clone(),
                _ => break,
            };
            index.unlink(&next.1);
            claimed.push(next.1);
        }
        let until = now_ms.saturating_add(lease_ms);
        for id in &claimed {
            index.leased.insert((until, id.clone()));
            index.entries.insert(
                id.clone(),
                Entry {
                    time: until,
                    token: Some(token.to_owned()),
                },
            );
        }
        Ok(claimed)
    }

    async fn release(
        &self,
        id: &MessageId,
        token: &str,
        due_ms: Option<u64>,
    ) -> Result<(), ScheduleError> {
        let mut index = self.index.lock().expect("schedule lock");
        let holds = index
            .entries
            .get(id)
            .is_some_and(|entry| entry.token.as_deref() == Some(token));
        if holds {
            index.unlink(id);
            if let Some(due) = due_ms {
                index.insert_due(id, due);
                drop(index);
                self.changed.notify_one();
            }
        }
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<u64>, ScheduleError> {
        let index = self.index.lock().expect("schedule lock");
        let due = index.due.first().map(|(time, _)| *time);
        let lease = index.leased.first().map(|(time, _)| *time);
        Ok(match (due, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn count(&self) -> Result<u64, ScheduleError> {
        Ok(self.index.lock().expect("schedule lock").entries.len() as u64)
    }

    async fn intact(&self) -> Result<bool, ScheduleError> {
        // Nothing outside the process can empty it.
        Ok(true)
    }

    async fn mark_intact(&self) -> Result<(), ScheduleError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_due_ids_in_order_and_leases_them() {
        let schedule = LocalSchedule::new();
        let (a, b, c) = (MessageId::new(), MessageId::new(), MessageId::new());
        schedule.add(&b, 200).await.unwrap();
        schedule.add(&a, 100).await.unwrap();
        schedule.add(&c, 300).await.unwrap();
        assert_eq!(schedule.next_due().await.unwrap(), Some(100));
        assert!(schedule.claim(99, 10, 1000, "t").await.unwrap().is_empty());
        assert_eq!(
            schedule.claim(250, 10, 1000, "t1").await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        // Leased ids are not claimed again until the lease expires.
        assert_eq!(
            schedule.claim(300, 10, 1000, "t2").await.unwrap(),
            vec![c.clone()]
        );
        assert!(
            schedule
                .claim(1249, 10, 1000, "t3")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(schedule.next_due().await.unwrap(), Some(1250));
        let reclaimed = schedule.claim(1250, 10, 1000, "t4").await.unwrap();
        assert_eq!(reclaimed, vec![a.clone(), b.clone()]);
        // A stale token cannot release; the current one can.
        schedule.release(&a, "t1", None).await.unwrap();
        assert_eq!(schedule.count().await.unwrap(), 3);
        schedule.release(&a, "t4", None).await.unwrap();
        schedule.release(&b, "t4", Some(5000)).await.unwrap();
        assert_eq!(schedule.count().await.unwrap(), 2);
        schedule.remove(&c).await.unwrap();
        assert_eq!(schedule.next_due().await.unwrap(), Some(5000));
    }
}
