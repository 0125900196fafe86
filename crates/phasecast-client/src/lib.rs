//! A Rust client for phasecast, behaving as `docs/clients.md` lays down for all three
//! clients.
//!
//! - [`Subscription`]: the one to use. It keeps a live, verified copy of a stream's
//!   state, reconnects with jittered back-off and resumes from the seq it holds, raises
//!   permanent errors (a wrong key, a wrong path) at once, gives up on the first
//!   connection after [`SubscribeOptions::first_connect_tries`], and reports
//!   [`Event`]s and [`Stats`]. [`Subscription::into_stream`] makes it a
//!   `futures::Stream` of `Result<Update, ClientError>`.
//! - [`Subscriber`]: one connection, for tools that manage connections themselves.
//! - [`Publisher`] (HTTP, one kept-alive connection) and [`IngestPublisher`] (the
//!   producer WebSocket) send states; refusals carry the server's status and reason.
//!
//! Over TLS (`wss://`, `https://`) it trusts the system's roots, plus any given with
//! [`TlsConfig::add_root_pem`]. It builds `reqwest` with rustls and no default crypto
//! provider; a program that also builds plain `reqwest` clients installs one first
//! (`rustls::crypto::ring::default_provider().install_default()`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), phasecast_client::ClientError> {
//! use phasecast_client::{SubscribeOptions, Subscription};
//! let mut sub = Subscription::new(SubscribeOptions::new("ws://127.0.0.1:8787/ws"));
//! while let Some(update) = sub.next().await {
//!     let update = update?; // a permanent error, or no server after 5 tries
//!     println!("seq {} ({:?}) energy {}", update.seq, update.kind, update.state.energy);
//! }
//! # Ok(()) }
//! ```

mod backoff;
mod error;
mod options;
mod publisher;
mod subscriber;
mod subscription;
mod tls;
mod url;

pub use backoff::Backoff;
pub use error::ClientError;
pub use options::{EventHandler, SubscribeOptions};
pub use phasecast_wire::codec::{Encoding, FrameKind};
pub use phasecast_wire::model::State;
pub use phasecast_wire::projection::{Field, Projection};
pub use phasecast_wire::summary::{Envelope, Range, Summary};
pub use publisher::{IngestPublisher, PublishReply, Publisher, PublisherBuilder};
pub use subscriber::{message, Received, Subscriber};
pub use subscription::{ConnectionState, Event, Stats, Subscription, Update};
pub use tls::TlsConfig;

/// The README's snippets, compiled by `cargo test --doc` so that they keep working.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
