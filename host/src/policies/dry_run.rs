//! A dry run: a tenant's hooks (current or proposed) decide on a sample message exactly as they
//! would for real, and nothing is stored, sent or counted.
//!
//! The simulation is the dispatcher's path with the clock moved by hand: validation and the
//! first delivery time now, then each simulated failure at the time the previous decision
//! named, up to the number of attempts asked for or until the policy gives up. Plugins read
//! the simulated time from their clock, so a delay policy that is a function of its inputs
//! (the built-in's jitter derives from the message id and attempt) gives the schedule the
//! dispatcher will follow.

use super::{Hooks, Policies, Rejection, Retry, Run};
use crate::domain::message::{Event, Message};

/// The failures to simulate after the first delivery time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    /// How many attempts fail, at most.
    pub attempts: u32,
    /// What each failed attempt reports.
    pub error: String,
    /// The channel's retry-after hint with each failure, in ms.
    pub retry_after_ms: Option<u64>,
}

/// One simulated failed attempt and what the delay policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryStep {
    /// The attempt that failed: 1 for the first delivery.
    pub attempt: u32,
    /// When it failed (the time it was due).
    pub failed_at_ms: u64,
    /// Retry at a time, or give up.
    pub decision: Retry,
}

/// Every decision of a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The validators' verdict.
    pub validation: Result<(), Rejection>,
    /// When the first delivery is planned, or why the delay policy refused the message.
    pub delivery: Option<Result<u64, Rejection>>,
    /// The retry schedule for the simulated failures.
    pub retries: Vec<RetryStep>,
    /// Every decision, as a message's history records it.
    pub events: Vec<Event>,
}

impl Policies {
    /// Runs `hooks` on `message` as the server would, simulating failed attempts.
    pub async fn dry_run(
        &self,
        hooks: &Hooks,
        message: &Message,
        simulation: &Simulation,
    ) -> DryRun {
        let now = self.clock.now_ms();
        let (validation, mut events) = self.validate_as(hooks, message, Run::Simulated(now)).await;
        let mut run = DryRun {
            validation,
            delivery: None,
            retries: Vec::new(),
            events: Vec::new(),
        };
        if run.validation.is_err() {
            run.events = events;
            return run;
        }
        let (planned, planned_events) = self.plan_as(hooks, message, Run::Simulated(now)).await;
        events.extend(planned_events);
        run.delivery = Some(planned.clone());
        let Ok(mut due) = planned else {
            run.events = events;
            return run;
        };
        for attempt in 1..=simulation.attempts {
            let attempted = Message {
                attempts: attempt,
                ..message.clone()
            };
            let (decision, decided) = self
                .retry_as(
                    hooks,
                    &attempted,
                    attempt,
                    &simulation.error,
                    simulation.retry_after_ms,
                    Run::Simulated(due),
                )
                .await;
            events.extend(decided);
            run.retries.push(RetryStep {
                attempt,
                failed_at_ms: due,
                decision: decision.clone(),
            });
            match decision {
                Retry::At(at) => due = at,
                Retry::GiveUp(_) => break,
            }
        }
        run.events = events;
        run
    }
}
