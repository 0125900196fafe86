//! The built-in demo producer (`phasecast serve --demo`): a Kuramoto simulation with
//! coupled spins, published on the default stream at a fixed rate, so a newcomer sees
//! state move with no other process.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    config::DemoConfig,
    hub::{Hub, HubError, DEFAULT_STREAM},
    workload::Workload,
};

/// Publishes simulation states until `shutdown` is cancelled.
pub(crate) async fn run(hub: Arc<Hub>, config: DemoConfig, shutdown: CancellationToken) {
    info!(
        hz = config.hz,
        oscillators = config.oscillators,
        "demo producer started"
    );
    let mut workload = Workload::kuramoto(config.oscillators, 1);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / config.hz));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let mut state = workload.next_state();
        state.timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        match hub.publish(DEFAULT_STREAM, state).await {
            Ok(_) => {}
            // The broker is away: this state is lost, the next ones go when it is back.
            Err(HubError::Log(e)) => {
                debug!(error = %e, "demo state not taken by the log");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "demo producer stopped");
                break;
            }
        }
        hub.metrics().state_received(started.elapsed());
    }
    info!("demo producer stopped");
}
