//! Integration tests: the real server on an ephemeral loopback port, real sockets.
#![allow(unreachable_pub, missing_docs)]

mod auth;
mod backpressure;
mod client_rules;
mod cluster;
mod compat;
mod conformance;
mod freshness;
mod hostile;
mod ingest;
mod memory;
mod metrics;
mod proxy;
mod publish;
mod restart;
mod resume;
mod shaping;
mod shutdown;
mod subscribe;
mod support;
mod tls;
