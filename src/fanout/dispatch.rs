//! Dispatch: who moves each new state to the subscribers of a stream. One task per
//! stream wakes when its newest seq moves and hands every subscriber's [`Outlet`]
//! the chance to write what is waiting for it, one after the other, on the fan-out's
//! own runtime. So a new state costs one wake, not one per subscriber, and the
//! runtime that accepts states (HTTP, `/ingest`) never runs a subscriber's write.
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

use tokio::runtime::Handle;
use tracing::debug;

use super::Channel;

/// One subscriber as the dispatch sees it.
pub trait Outlet: Send + Sync {
    /// Writes what is waiting for the subscriber, if it may write now; never waits.
    fn deliver(&self);
    /// The stream was retired or is gone: the subscriber's session must look.
    fn wake(&self);
}

/// Every stream's dispatch task, on one runtime.
#[derive(Debug)]
pub struct Dispatch {
    runtime: Handle,
    /// By channel (its address), while the channel lives.
    streams: Mutex<HashMap<usize, Stream>>,
}

/// A stream's dispatch: its channel, while it lives, and its outlets.
type Stream = (Weak<Channel>, Arc<Members>);

#[derive(Default)]
struct Members {
    list: Mutex<Vec<(u64, Arc<dyn Outlet>)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.list.lock().map_or(0, |l| l.len());
        f.debug_struct("Members").field("outlets", &n).finish()
    }
}

/// A subscriber's place in its stream's dispatch; leaving it (drop) stops its writes.
#[derive(Debug)]
pub struct Membership {
    members: Arc<Members>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut list = self.members.list.lock().expect("members lock");
        list.retain(|(id, _)| *id != self.id);
    }
}

impl Dispatch {
    /// Dispatch tasks run on `runtime`.
    pub fn new(runtime: Handle) -> Dispatch {
        Dispatch {
            runtime,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `outlet` to `channel`'s dispatch (starting it for the stream's first
    /// subscriber). It is offered every state published from now on.
    pub fn join(&self, channel: &Arc<Channel>, outlet: Arc<dyn Outlet>) -> Membership {
        let key = Arc::as_ptr(channel) as usize;
        let mut streams = self.streams.lock().expect("dispatch lock");
        // A stream gone and another made at the same address: its entry is stale.
        streams.retain(|_, (stream, _)| stream.strong_count() > 0);
        let (_, members) = streams.entry(key).or_insert_with(|| {
            let members = Arc::new(Members::default());
            self.runtime
                .spawn(run(Arc::downgrade(channel), members.clone()));
            (Arc::downgrade(channel), members)
        });
        let members = members.clone();
        let id = members.next_id.fetch_add(1, Relaxed);
        members
            .list
            .lock()
            .expect("members lock")
            .push((id, outlet));
        Membership { members, id }
    }
}

/// One stream's task: at each new seq, every outlet delivers, until the stream is
/// retired or gone (its outlets, delivering, find it so and wake their sessions).
async fn run(channel: Weak<Channel>, members: Arc<Members>) {
    let Some(mut head) = channel.upgrade().map(|c| c.watch_head()) else {
        return;
    };
    loop {
        let gone = head.changed().await.is_err();
        for (_, outlet) in members.list.lock().expect("members lock").iter() {
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
