//! Dispatch: who moves each new state to the subscribers of a stream. A stream's
//! subscribers are split into shards of at most [`SHARD_OUTLETS`] (1,024); one task per shard
//! wakes when the stream's newest seq moves and hands each of its subscribers'
//! [`Outlet`]s the chance to write what is waiting, one after the other, on the
//! fan-out's own runtime. So a new state costs one wake per shard, not one per
//! subscriber; the shards of a large stream run in parallel on the runtime's workers;
//! and the runtime that accepts states (HTTP, `/ingest`) never runs a subscriber's
//! write.
//!
//! An outlet does not wait: what its socket does not take at once it leaves to its
//! session, which is woken only then (and for its own timers and reads).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, Weak,
    },
};

use tokio::{runtime::Handle, sync::watch};
use tracing::debug;

use super::Channel;

/// One subscriber as the dispatch sees it.
pub trait Outlet: Send + Sync {
    /// Writes what is waiting for the subscriber, if it may write now; never waits.
    fn deliver(&self);
    /// The stream was retired or is gone: the subscriber's session must look.
    fn wake(&self);
}

/// Most subscribers one dispatch task writes to: a pass over them (about 5 µs each)
/// fits in the 5 ms between two states of a 200 Hz stream. A stream with more gets
/// more tasks, run in parallel where there are cores for them; smaller shards cost
/// more wakes and, on two cores, skipped frames at 1,000 subscribers
/// (docs/benchmarks.md, "The fan-out floor").
pub(super) const SHARD_OUTLETS: usize = 1024;

/// Every stream's dispatch tasks, on one runtime.
#[derive(Debug)]
pub struct Dispatch {
    runtime: Handle,
    /// By channel (its address), while the channel lives.
    streams: Mutex<HashMap<usize, Stream>>,
}

/// A stream's dispatch: its channel, while it lives, and its shards.
#[derive(Debug)]
struct Stream {
    channel: Weak<Channel>,
    shards: Vec<Arc<Shard>>,
}

/// Some of a stream's outlets, and the task that writes to them.
#[derive(Default)]
struct Shard {
    list: Mutex<Vec<(u64, Arc<dyn Outlet>)>>,
}

impl Shard {
    fn len(&self) -> usize {
        self.list.lock().map_or(0, |l| l.len())
    }
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("outlets", &self.len())
            .finish()
    }
}

/// A subscriber's place in its stream's dispatch; leaving it (drop) stops its writes.
#[derive(Debug)]
pub struct Membership {
    shard: Arc<Shard>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut list = self.shard.list.lock().expect("shard lock");
        list.retain(|(id, _)| *id != self.id);
    }
}

/// Ids of memberships, unique for the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Dispatch {
    /// Dispatch tasks run on `runtime`.
    pub fn new(runtime: Handle) -> Dispatch {
        Dispatch {
            runtime,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `outlet` to `channel`'s dispatch, in its least full shard (starting a
    /// shard and its task when every one is full). It is offered every state
    /// published from now on.
    pub fn join(&self, channel: &Arc<Channel>, outlet: Arc<dyn Outlet>) -> Membership {
        let key = Arc::as_ptr(channel) as usize;
        let mut streams = self.streams.lock().expect("dispatch lock");
        // A stream gone and another made at the same address: its entry is stale.
        streams.retain(|_, stream| stream.channel.strong_count() > 0);
        let stream = streams.entry(key).or_insert_with(|| Stream {
            channel: Arc::downgrade(channel),
            shards: Vec::new(),
        });
        let roomy = stream
            .shards
            .iter()
            .map(|shard| (shard.len(), shard))
            .filter(|(len, _)| *len < SHARD_OUTLETS)
            .min_by_key(|(len, _)| *len)
            .map(|(_, shard)| shard.clone());
        let shard = roomy.unwrap_or_else(|| {
            let shard = Arc::new(Shard::default());
            // Watched from now, not from when the task first runs: a state published
            // in between is offered too.
            let head = channel.watch_head();
            self.runtime
                .spawn(run(stream.channel.clone(), head, shard.clone()));
            stream.shards.push(shard.clone());
            shard
        });
        let id = NEXT_ID.fetch_add(1, Relaxed);
        shard.list.lock().expect("shard lock").push((id, outlet));
        Membership { shard, id }
    }
}

/// One shard's task: at each new seq, every outlet delivers, until the stream is
/// retired or gone (its outlets, delivering, find it so and wake their sessions).
async fn run(channel: Weak<Channel>, mut head: watch::Receiver<u64>, shard: Arc<Shard>) {
    loop {
        let gone = head.changed().await.is_err();
        for (_, outlet) in shard.list.lock().expect("shard lock").iter() {
            if gone {
                outlet.wake();
            } else {
                outlet.deliver();
            }
        }
        if gone || channel.upgrade().is_none_or(|c| c.is_retired()) {
            break;
        }
    }
    debug!("stream dispatch ended");
}
