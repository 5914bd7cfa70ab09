//! The in-process schedule of the embedded default: an ordered set of `(due, id)` and one of
//! `(lease expiry, id)`, behind a mutex, with a [`Notify`] that wakes the dispatcher when an id
//! is added sooner than anything it holds (so the dispatcher waits exactly until the next due
//! time, never on a fixed poll).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::{Claim, IndexStats, Release, Schedule, ScheduleError};
use crate::domain::ids::MessageId;

#[derive(Default)]
struct Index {
    /// `(due ms, id)`: waiting ids, earliest first.
    due: BTreeSet<(u64, MessageId)>,
    /// `(lease expiry ms, id)`: claimed ids, earliest expiry first.
    leased: BTreeSet<(u64, MessageId)>,
    /// Where each id is: its time, and its token while leased.
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

    /// What the dispatcher waits for: the earliest due time or lease expiry.
    fn earliest(&self) -> Option<u64> {
        let due = self.due.first().map(|(time, _)| *time);
        let lease = self.leased.first().map(|(time, _)| *time);
        match (due, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether ids newly due from `added` on warrant waking the dispatcher, which waits for
/// `before` (`None`: the index was empty): only when one of them is due sooner.
fn wakes(before: Option<u64>, added: Option<u64>) -> bool {
    match (before, added) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(before), Some(added)) => added < before,
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

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("schedule lock")
    }

    fn wake_if(&self, before: Option<u64>, added: Option<u64>) {
        if wakes(before, added) {
            self.changed.notify_one();
        }
    }
}

#[async_trait::async_trait]
impl Schedule for LocalSchedule {
    async fn add_many(&self, entries: &[(MessageId, u64)]) -> Result<(), ScheduleError> {
        let mut index = self.index();
        let before = index.earliest();
        for (id, due) in entries {
            index.insert_due(id, *due);
        }
        drop(index);
        self.wake_if(before, entries.iter().map(|(_, due)| *due).min());
        Ok(())
    }

    async fn restore(&self, entries: &[(MessageId, u64)]) -> Result<u64, ScheduleError> {
        let mut index = self.index();
        let before = index.earliest();
        let (mut added, mut earliest) = (0u64, None::<u64>);
        for (id, due) in entries {
            if !index.entries.contains_key(id) {
                index.insert_due(id, *due);
                added += 1;
                earliest = Some(earliest.map_or(*due, |time| time.min(*due)));
            }
        }
        drop(index);
        self.wake_if(before, earliest);
        Ok(added)
    }

    async fn remove(&self, id: &MessageId) -> Result<(), ScheduleError> {
        self.index().unlink(id);
        Ok(())
    }

    async fn claim(
        &self,
        now_ms: u64,
        max: usize,
        lease_ms: u64,
        token: &str,
    ) -> Result<Claim, ScheduleError> {
        let mut index = self.index();
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
        Ok(Claim {
            ids: claimed,
            // Nothing outside the process can empty it.
            intact: true,
        })
    }

    async fn release_many(&self, releases: &[Release]) -> Result<(), ScheduleError> {
        let mut index = self.index();
        let before = index.earliest();
        let mut earliest = None::<u64>;
        for release in releases {
            let holds = index
                .entries
                .get(&release.id)
                .is_some_and(|entry| entry.token.as_deref() == Some(release.token.as_str()));
            if !holds {
                continue;
            }
            index.unlink(&release.id);
            if let Some(due) = release.due_ms {
                index.insert_due(&release.id, due);
                earliest = Some(earliest.map_or(due, |time| time.min(due)));
            }
        }
        drop(index);
        self.wake_if(before, earliest);
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<u64>, ScheduleError> {
        Ok(self.index().earliest())
    }

    async fn changed(&self) {
        self.changed.notified().await;
    }

    async fn count(&self) -> Result<u64, ScheduleError> {
        Ok(self.index().entries.len() as u64)
    }

    async fn stats(&self, now_ms: u64) -> Result<IndexStats, ScheduleError> {
        let index = self.index();
        let overdue = index
            .due
            .iter()
            .take_while(|(time, _)| *time <= now_ms)
            .count();
        let leases_expired = index
            .leased
            .iter()
            .take_while(|(time, _)| *time <= now_ms)
            .count();
        Ok(IndexStats {
            due: index.due.len() as u64,
            overdue: overdue as u64,
            oldest_overdue_ms: index
                .due
                .first()
                .map(|(time, _)| *time)
                .filter(|time| *time <= now_ms),
            leased: index.leased.len() as u64,
            leases_expired: leases_expired as u64,
        })
    }

    async fn intact(&self) -> Result<bool, ScheduleError> {
        // Nothing outside the process can empty it.
        Ok(true)
    }

    async fn mark_intact(&self) -> Result<(), ScheduleError> {
        Ok(())
    }
}
