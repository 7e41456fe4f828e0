//! Following an event log: [`EventFollow`], a [`Follow`] that decodes each record as an
//! [`EventEnvelope`], and the [`EventLog`] methods for follows and consumers.

use std::time::Duration;

use crate::error::Result;
use crate::event::EventEnvelope;
use crate::event_log::EventLog;
use crate::log::{Consumer, Follow, FollowStop, Next};

/// A live follower of an event log: a [`Follow`] whose records are decoded as events. Made by
/// [`EventLog::follow`], [`EventLog::follow_durable`], or from any [`Follow`] of an event log's
/// records (`EventFollow::from(consumer.follow()?)`).
///
/// Everything [`Follow`] guarantees holds. A record that is not a valid event is reported as
/// one [`StorageError::Decode`](crate::StorageError::Decode) and ends the follow, as
/// [`EventLog::replay`] ends at one.
#[derive(Debug)]
pub struct EventFollow {
    inner: Follow,
}

impl From<Follow> for EventFollow {
    fn from(inner: Follow) -> EventFollow {
        EventFollow { inner }
    }
}

impl EventFollow {
    /// Returns the next event, or waits up to `timeout` for one. As
    /// [`Follow::next_timeout`], with each record decoded.
    pub fn next_timeout(&mut self, timeout: Duration) -> Next<EventEnvelope> {
        match self.inner.next_timeout(timeout) {
            Next::Record(record) => match EventEnvelope::from_record(&record) {
                Ok(envelope) => Next::Record(envelope),
                Err(err) => {
                    // Ends the follow: the next call returns `Stopped`.
                    self.inner.stop_handle().stop();
                    Next::Error(err)
                }
            },
            Next::Error(err) => Next::Error(err),
            Next::CaughtUp => Next::CaughtUp,
            Next::TimedOut => Next::TimedOut,
            Next::Stopped => Next::Stopped,
        }
    }

    /// A handle that stops this follow from any thread (see [`FollowStop`]).
    #[must_use]
    pub fn stop_handle(&self) -> FollowStop {
        self.inner.stop_handle()
    }

    /// The offset of the next event this follow will deliver (see [`Follow::next_offset`]).
    #[must_use]
    pub fn next_offset(&self) -> u64 {
        self.inner.next_offset()
    }

    /// Whether every event up to the live end has been delivered (see
    /// [`Follow::is_caught_up`]).
    #[must_use]
    pub fn is_caught_up(&self) -> bool {
        self.inner.is_caught_up()
    }
}

impl Iterator for EventFollow {
    type Item = Result<EventEnvelope>;

    /// Blocks until the next event or error; `None` once the follow is stopped or ended.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Next::Record(envelope) => return Some(Ok(envelope)),
                Next::Error(err) => return Some(Err(err)),
                Next::Stopped => return None,
                Next::CaughtUp | Next::TimedOut => {}
            }
        }
    }
}

impl EventLog {
    /// Follows the event log from offset `from`: every event from there on, then each new
    /// one as it is appended. Delivered once published (in the page cache). See
    /// [`Log::follow`](crate::Log::follow) for `from` and the guarantees.
    #[must_use]
    pub fn follow(&self, from: u64) -> EventFollow {
        self.log().follow(from).into()
    }

    /// As [`EventLog::follow`], delivering only events on stable storage. See
    /// [`Log::follow_durable`](crate::Log::follow_durable).
    #[must_use]
    pub fn follow_durable(&self, from: u64) -> EventFollow {
        self.log().follow_durable(from).into()
    }

    /// Opens the consumer `name` of this event log. See [`Log::consumer`](crate::Log::consumer)
    /// and [`Consumer`]; wrap its follow as events with `EventFollow::from(consumer.follow()?)`.
    ///
    /// # Errors
    /// As [`Log::consumer`](crate::Log::consumer).
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        self.log().consumer(name)
    }

    /// The consumers with a stored position. See [`Log::consumers`](crate::Log::consumers).
    ///
    /// # Errors
    /// As [`Log::consumers`](crate::Log::consumers).
    pub fn consumers(&self) -> Result<Vec<String>> {
        self.log().consumers()
    }

    /// Removes a consumer's stored position. See
    /// [`Log::remove_consumer`](crate::Log::remove_consumer).
    ///
    /// # Errors
    /// As [`Log::remove_consumer`](crate::Log::remove_consumer).
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        self.log().remove_consumer(name)
    }
}
