//! The NATS side of the [`Bus`](super::Bus): one task publishes what this node
//! sequenced, in order; one task receives what the other nodes sequenced and hands it
//! on as [`Inbound`]. It knows nothing of streams or the hub.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::{decode_update, encode_update, Inbound, Outbound, SUBJECT_PREFIX};
use crate::{
    config::BusConfig,
    metrics::{BusDrop, Metrics},
};

/// Connects to NATS (retrying in the background until the broker answers) and
/// spawns the publishing and receiving tasks on `tracker`: `queued` is what the
/// [`Bus`](super::Bus) forwards; the returned [`Inbound`] is what other nodes sequenced.
///
/// # Errors
/// An invalid URL.
pub async fn spawn(
    config: BusConfig,
    mut queued: mpsc::Receiver<Outbound>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Inbound, async_nats::ConnectError> {
    let events = metrics.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("phasecast {}", config.node_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let metrics = events.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        info!("bus connected");
                        metrics.bus_connected(true);
                    }
                    async_nats::Event::Disconnected => {
                        warn!("bus disconnected; reconnecting");
                        metrics.bus_connected(false);
                    }
                    other => debug!(event = %other, "bus event"),
                }
            }
        })
        .connect(config.url.as_str())
        .await?;

    let publisher = client.clone();
    let origin = config.node_id.clone();
    let publish_metrics = metrics.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        loop {
            let queued = tokio::select! {
                _ = stop.cancelled() => break,
                next = queued.recv() => match next {
                    Some(n) => n,
                    None => break,
                },
            };
            let subject = format!("{SUBJECT_PREFIX}{}", queued.stream);
            match publisher
                .publish(subject, encode_update(&queued.update, &origin))
                .await
            {
                Ok(()) => publish_metrics.bus_published(),
                Err(e) => {
                    debug!(error = %e, "bus publish failed");
                    publish_metrics.bus_dropped(BusDrop::PublishFailed);
                }
            }
        }
        let _ = publisher.flush().await;
    });

    let (deliver, inbound) = mpsc::channel(config.queue.max(1));
    let node_id = config.node_id.clone();
    let subscriber = client.clone();
    tracker.spawn(async move {
        let mut subscription = match subscriber.subscribe(format!("{SUBJECT_PREFIX}>")).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "bus subscribe failed: this node will not receive other nodes' states");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = subscription.next() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let Some(stream) = message.subject.as_str().strip_prefix(SUBJECT_PREFIX) else {
                continue;
            };
            let (update, origin) = match decode_update(&message.payload) {
                Ok(u) => u,
                Err(e) => {
                    warn!(error = %e, stream, "undecodable bus update dropped");
                    metrics.bus_dropped(BusDrop::Undecodable);
                    continue;
                }
            };
            if origin == node_id {
                continue; // applied when it was sequenced here
            }
            if deliver.send((stream.to_owned(), update)).await.is_err() {
                break; // the hub is gone
            }
        }
        let _ = subscription.unsubscribe().await;
    });
    info!(url = %config.url, node = %config.node_id, "bus: NATS");
    Ok(inbound)
}
