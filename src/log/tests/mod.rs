//! Unit tests of the log that look inside it: at the writer's positions and requests, at
//! failures injected into it, and at the pages of the segments a log shares with its readers.

mod group_commit;
mod pager_requests;
mod poison;
mod release;
mod without_threads;
mod zero_ahead;
