//! The fan-out's own runtime: every stream's dispatch task and every subscriber's
//! session run on it, so the runtime that accepts states (HTTP `POST`, `/ingest`)
//! never waits behind a subscriber's write, and a producer's round trip stays short
//! however many subscribers there are.

use std::{io, sync::Mutex};

use tokio::runtime::{Builder, Handle, Runtime};

/// A multi-threaded runtime for fan-out work.
#[derive(Debug)]
pub struct FanoutRuntime {
    /// Taken on drop: shut down without waiting, wherever the last owner is.
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

impl FanoutRuntime {
    /// Starts `threads` worker threads (named `phasecast-fanout`); 0: one per core.
    /// Fewer cost less CPU per frame on a small machine (on two cores, one worker
    /// 10-15% less than two: they steal from each other at every state), but then a
    /// loaded stream's shards share that one, and at 1,000 subscribers on two cores
    /// a few frames were skipped (docs/benchmarks.md, "The fan-out floor").
    ///
    /// # Errors
    /// When the threads cannot be started.
    pub fn start(threads: usize) -> io::Result<FanoutRuntime> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = if threads == 0 { cores } else { threads };
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("phasecast-fanout")
            .enable_all()
            .build()?;
        Ok(FanoutRuntime {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Where fan-out tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for FanoutRuntime {
    fn drop(&mut self) {
        let runtime = self.runtime.get_mut().ok().and_then(Option::take);
        if let Some(runtime) = runtime {
            // Sessions have closed by now (the server waits for them); this may run
            // on any thread, even one of its own workers, so it must not block.
            runtime.shutdown_background();
        }
    }
}
