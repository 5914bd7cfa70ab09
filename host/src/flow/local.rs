//! The in-process limiter of the embedded default: each key's state in a map behind a mutex.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::{Ask, FlowError, FlowKey, Limiter, Verdict, WAITING_GRACE_MS};
use crate::domain::ids::MessageId;

#[derive(Default)]
struct KeyState {
    /// The rate's theoretical arrival time, µs.
    tat_us: u64,
    /// Held until then.
    paused_until: u64,
    /// Reserved rate slots of waiting messages.
    reserved: HashMap<MessageId, u64>,
    /// Deliveries in flight, until their lease ends.
    in_flight: HashMap<MessageId, u64>,
    /// Messages waiting for a parallelism slot, by `(order, id)`.
    waiters: BTreeSet<(u64, MessageId)>,
    /// Waiting messages and when they are expected back.
    waiting: HashMap<MessageId, u64>,
}

impl KeyState {
    fn admit(&mut self, ask: &Ask, now: u64, lease_ms: u64) -> Verdict {
        self.in_flight.retain(|_, until| *until > now);
        self.waiting
            .retain(|_, until| until.saturating_add(WAITING_GRACE_MS) >= now);
        let wait = self.verdict(ask, now, lease_ms);
        match wait {
            Some(until) => {
                self.waiting.insert(ask.id.clone(), until);
                Verdict::Wait(until)
            }
            None => {
                self.waiters.remove(&(ask.order, ask.id.clone()));
                self.waiting.remove(&ask.id);
                if ask.cap().is_some() {
                    self.in_flight.insert(ask.id.clone(), now + lease_ms);
                }
                Verdict::Go
            }
        }
    }

    /// `Some(until)` when the message waits.
    fn verdict(&mut self, ask: &Ask, now: u64, lease_ms: u64) -> Option<u64> {
        if self.paused_until > now {
            return Some(self.paused_until);
        }
        if let Some(cap) = ask.cap()
            && !self.in_flight.contains_key(&ask.id)
        {
            // FIFO: nobody passes an earlier waiter (one still expected back).
            while let Some((_, first)) = self.waiters.first()
                && !self.waiting.contains_key(first)
            {
                self.waiters.pop_first();
            }
            let behind = ask.fifo
                && self
                    .waiters
                    .first()
                    .is_some_and(|(order, id)| (ask.order, &ask.id) > (*order, id));
            if behind || self.in_flight.len() >= cap as usize {
                self.waiters.insert((ask.order, ask.id.clone()));
                return Some(now + lease_ms);
            }
        }
        if let Some(rate) = ask.rate {
            match self.reserved.get(&ask.id).copied() {
                Some(slot) if slot > now => return Some(slot),
                Some(_) => {
                    self.reserved.remove(&ask.id);
                }
                None => {
                    let now_us = now * 1000;
                    let tat = self.tat_us.max(now_us);
                    self.tat_us = tat + rate.interval_us;
                    let conforms_us = tat.saturating_sub(rate.tolerance_us);
                    if conforms_us > now_us {
                        let slot = conforms_us.div_ceil(1000);
                        self.reserved.insert(ask.id.clone(), slot);
                        return Some(slot);
                    }
                }
            }
        }
        None
    }

    fn idle(&self, now: u64) -> bool {
        self.tat_us <= now * 1000
            && self.paused_until <= now
            && self.reserved.is_empty()
            && self.in_flight.is_empty()
            && self.waiters.is_empty()
            && self.waiting.is_empty()
    }
}

/// The in-process limiter.
#[derive(Default)]
pub struct LocalLimiter {
    keys: Mutex<HashMap<FlowKey, KeyState>>,
}

impl LocalLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Limiter for LocalLimiter {
    async fn admit(
        &self,
        now_ms: u64,
        lease_ms: u64,
        asks: &[Ask],
    ) -> Result<Vec<Verdict>, FlowError> {
        let mut keys = self.keys.lock().expect("flow limiter lock");
        let verdicts = asks
            .iter()
            .map(|ask| {
                let state = keys.entry(ask.key.clone()).or_default();
                let verdict = state.admit(ask, now_ms, lease_ms);
                if state.idle(now_ms) {
                    keys.remove(&ask.key);
                }
                verdict
            })
            .collect();
        Ok(verdicts)
    }

    async fn finish(
        &self,
        done: &[(FlowKey, MessageId, bool)],
    ) -> Result<Vec<MessageId>, FlowError> {
        let mut keys = self.keys.lock().expect("flow limiter lock");
        let mut woken = Vec::new();
        for (key, id, fifo) in done {
            if let Some(state) = keys.get_mut(key) {
                state.in_flight.remove(id);
                let first = if *fifo {
                    state.waiters.first().cloned()
                } else {
                    state.waiters.pop_first()
                };
                if let Some((_, first)) = first {
                    woken.push(first);
                }
            }
        }
        Ok(woken)
    }

    async fn hold(&self, key: &FlowKey, id: &MessageId, until_ms: u64) -> Result<(), FlowError> {
        let mut keys = self.keys.lock().expect("flow limiter lock");
        keys.entry(key.clone())
            .or_default()
            .in_flight
            .insert(id.clone(), until_ms);
        Ok(())
    }

    async fn pause(&self, key: &FlowKey, _now_ms: u64, until_ms: u64) -> Result<(), FlowError> {
        let mut keys = self.keys.lock().expect("flow limiter lock");
        let state = keys.entry(key.clone()).or_default();
        state.paused_until = state.paused_until.max(until_ms);
        Ok(())
    }

    async fn waiting(
        &self,
        now_ms: u64,
        top: usize,
    ) -> Result<(Vec<(FlowKey, u64)>, u64), FlowError> {
        let keys = self.keys.lock().expect("flow limiter lock");
        let mut counts: Vec<(FlowKey, u64)> = keys
            .iter()
            .map(|(key, state)| {
                let count = state
                    .waiting
                    .values()
                    .filter(|until| until.saturating_add(WAITING_GRACE_MS) >= now_ms)
                    .count() as u64;
                (key.clone(), count)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        let total = counts.iter().map(|(_, count)| count).sum();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(top);
        Ok((counts, total))
    }
}
