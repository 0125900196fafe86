//! Fan-out: from one stream's sequenced states to the frames each subscriber writes.
//!
//! - [`Channel`] (`channel.rs`): one stream's lock and history (one chain of views per
//!   precision class in use), which subscribers read from when the newest seq moves;
//!   publishing never waits on a subscriber.
//! - [`Update`] (`update.rs`): one accepted state of one class, shared by every
//!   subscriber of the class, with its frames encoded once per [`Form`] (format and
//!   fields) and kind and cached, and its summary; the one place that decides whether a
//!   delta is worth sending.
//! - [`Feed`] (`feed.rs`): one subscriber's cursor and the slow-consumer policy (in
//!   step, batching, conflation, `max_hz`, resync), with no socket in it.
//! - [`Dispatch`] (`dispatch.rs`): one task per 1,024 subscribers of a stream, on
//!   the fan-out's runtime, that offers each new state to each of their [`Outlet`]s,
//!   which writes it without waiting.
//! - [`FanoutRuntime`] (`runtime.rs`): the runtime dispatch tasks and subscriber
//!   sessions run on, apart from the one that accepts states.
//! - [`Pace`] (`pace.rs`): how far ahead of its reader a subscriber's socket may run
//!   (the freshness bound), followed by probes (pings) written behind the frames.

mod channel;
mod dispatch;
mod feed;
mod pace;
mod runtime;
mod update;

pub use channel::{Channel, Head, Joined, Resume, Since};
#[cfg(test)]
use dispatch::SHARD_OUTLETS;
pub use dispatch::{Dispatch, Membership, Outlet};
pub use feed::{Batch, Feed, Next, Outgoing, Wants};
pub use pace::{Pace, Reached};
pub use runtime::FanoutRuntime;
pub use update::{message, Encoded, Form, Held, StateSummary, Update, View};

#[cfg(test)]
mod tests;
