//! One stream's fan-out: under one short lock, its [`Sequencer`] orders each state and
//! the resulting [`Update`] joins a bounded history, which is both what resuming
//! subscribers resume from and what every subscriber's [`Feed`](super::Feed) reads
//! from: a subscriber is woken with the newest seq ([`watch`]) and takes the updates
//! after its cursor from the history. Publishing never waits on a subscriber, and the
//! history is the one place that keeps updates alive, so what it drops is freed.
//!
//! The history keeps each state in its compact form (seq and view). Only the newest
//! updates, at most as many as the outbox and within the stream's frame cache in bytes,
//! keep their encoded frames: this is the window a lagging subscriber replays frame by
//! frame; past it a subscriber skips ahead by one catch-up delta from what it holds,
//! encoded for it. So a retained state costs its view, not every encoding ever made
//! of it. Every view and frame is charged to the stream's memory [`Account`]; under
//! memory pressure the hub asks the stream to [`Channel::shed`] its oldest states.
//!
//! Each precision class (`?epsilon=`) the stream's subscribers ask for is a *chain*
//! of its own: a sequencer, and a history of views within its ε. The default class's
//! chain is always there; another starts when its first subscriber joins, from the
//! producer's newest state (the stream keeps it: the *truth*), and stays. Every chain
//! takes every state at the same seq. Summaries (`?fields=summary`) are made once per
//! state, from the truth, while the stream has subscribers that take them.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use tokio::sync::watch;

use super::{Held, StateSummary, Update, View};
use crate::{
    config::StreamConfig,
    memory::{self, Account, Budget, Charge},
    metrics::Metrics,
    model::State,
    stream::{Classes, Sequenced, Sequencer},
};

/// Seq and shape of a stream's newest state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Newest seq (0 before the first state).
    pub seq: u64,
    /// Its producer step.
    pub step: u64,
    /// Its number of oscillators.
    pub oscillators: usize,
}

/// Where a reconnecting subscriber says it is: the seq of the state it holds and the
/// epoch of the stream it got it from (`?resume=SEQ&epoch=EPOCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Seq of the state held.
    pub seq: u64,
    /// The stream's epoch when that state was received. Without one (a client from
    /// before epochs) the seq cannot be placed: the resume is a miss.
    pub epoch: Option<String>,
}

/// One named stream's sequencing, history and broadcast.
#[derive(Debug)]
pub struct Channel {
    name: String,
    /// Changes whenever this stream's seqs could start again (a new process on a
    /// single node, a log made anew on a broker): a seq is only meaningful with it.
    epoch: Arc<str>,
    classes: Classes,
    keyframe_interval: u64,
    summary_bins: usize,
    history_len: usize,
    /// How many of the newest updates keep their frames (the outbox): a subscriber
    /// that falls further behind skips ahead (latest wins).
    window: usize,
    /// Bytes of frames the window may keep past its two newest updates, shared by the
    /// active chains.
    frame_cache: usize,
    /// What this stream's views and frames are charged to.
    account: Arc<Account>,
    /// Sequencing state and history; held briefly per state, never across I/O.
    inner: Mutex<Inner>,
    /// The newest seq, watched by every subscriber's feed.
    head: watch::Sender<u64>,
    subscribers: AtomicUsize,
    /// Subscribers that take summaries: while there are any, each state gets one.
    summary_subscribers: AtomicUsize,
    /// Replaced by a stream of another epoch: its subscribers are sent away.
    retired: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    /// One chain per class, by class index; `None` until a subscriber asks for it
    /// (the default class's is always there).
    chains: Vec<Option<Chain>>,
    /// The producer's newest state.
    truth: Option<Truth>,
}

impl Inner {
    fn chain(&self, class: usize) -> &Chain {
        self.chains[class]
            .as_ref()
            .expect("a subscriber's class is started when it joins")
    }

    fn active(&mut self) -> impl Iterator<Item = &mut Chain> {
        self.chains.iter_mut().flatten()
    }

    fn seq(&self) -> u64 {
        self.truth.as_ref().map_or(0, |t| t.seq)
    }
}

/// The producer's newest state, as it came (not a view within ε): what a class that
/// starts now starts from and what summaries are made of. Charged.
#[derive(Debug)]
struct Truth {
    seq: u64,
    state: State,
    summary: Option<Arc<StateSummary>>,
    _charge: Charge,
}

/// One precision class's views: its sequencer and history.
#[derive(Debug)]
struct Chain {
    sequencer: Sequencer,
    /// The sequencer's copy of the newest view.
    sequencer_charge: Charge,
    /// Oldest first; the newest entries, at most `window`, also hold their update.
    history: VecDeque<Entry>,
}

impl Chain {
    /// The retained entry at `seq`. Seqs rise but may skip (a log entry this node
    /// could not take), so it is looked up, not computed.
    fn find(&self, seq: u64) -> Option<&Entry> {
        let i = self
            .history
            .binary_search_by_key(&seq, |e| e.held.seq)
            .ok()?;
        self.history.get(i)
    }

    fn latest(&self) -> Option<&Arc<Update>> {
        self.history.back().and_then(|e| e.update.as_ref())
    }

    /// Bytes of encoded frames the chain keeps.
    fn cached_bytes(&self) -> usize {
        self.history
            .iter()
            .filter_map(|e| e.update.as_ref())
            .map(|u| u.cached_bytes())
            .sum()
    }

    /// Bytes of the newest view and its frames.
    fn newest_bytes(&self) -> usize {
        self.latest()
            .map_or(0, |u| memory::state_bytes(&u.view) + u.cached_bytes())
    }
}

/// One retained state.
#[derive(Debug)]
struct Entry {
    held: Held,
    /// The update with its encoded frames, while it is among the newest `window`.
    update: Option<Arc<Update>>,
    /// Its summary, if made: what an envelope folds in for a subscriber that skipped
    /// this state after its update left the window.
    summary: Option<Arc<StateSummary>>,
}

/// What a subscriber gets when it joins a stream.
#[derive(Debug)]
pub struct Joined {
    /// The newest update of its class, if the stream has one.
    pub latest: Option<Arc<Update>>,
    /// The state the subscriber asked to resume from, if still in the history.
    pub resume_from: Option<Held>,
    /// Tells the newest seq as it moves; what follows `latest` is taken with
    /// [`Channel::since`].
    pub head: watch::Receiver<u64>,
}

/// Updates after a subscriber's cursor, as [`Channel::since`] found them.
#[derive(Debug, Default)]
pub struct Since {
    /// Updates still in the window, oldest first, at most the number asked for.
    pub updates: Vec<Arc<Update>>,
    /// States after the cursor that left the window (or the history) before the
    /// subscriber took them.
    pub lagged: u64,
    /// The summaries of the states that left the window, when asked for.
    pub lagged_summaries: Vec<Arc<StateSummary>>,
}

impl Channel {
    /// A new, empty stream charging `budget`. `outbox_frames` bounds how far a
    /// subscriber may lag.
    pub fn new(
        name: String,
        epoch: &str,
        config: &StreamConfig,
        outbox_frames: usize,
        budget: &Arc<Budget>,
    ) -> Channel {
        let account = budget.account(&name);
        let classes = Classes::of(config);
        let mut chains: Vec<Option<Chain>> = (0..classes.len()).map(|_| None).collect();
        chains[classes.default_class()] = Some(Chain {
            sequencer: Sequencer::with_tolerance(config.tolerance, config.keyframe_interval),
            sequencer_charge: account.charge(0),
            history: VecDeque::new(),
        });
        Channel {
            name,
            epoch: epoch.into(),
            classes,
            keyframe_interval: config.keyframe_interval,
            summary_bins: config.summary_bins,
            history_len: config.history.max(1),
            window: outbox_frames.max(1),
            frame_cache: config.frame_cache_bytes,
            inner: Mutex::new(Inner {
                chains,
                truth: None,
            }),
            account,
            head: watch::channel(0).0,
            subscribers: AtomicUsize::new(0),
            summary_subscribers: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// What this stream's memory is charged to.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's epoch: full frames carry it, resumes must match it.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The precision classes subscribers may choose.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Sequences `state` and applies it: the path from producer to subscribers on a
    /// single node. Returns the seq. Never waits on a subscriber.
    pub fn publish(&self, state: State, metrics: &Metrics) -> u64 {
        let mut inner = self.lock();
        let seq = inner.seq() + 1;
        self.push(&mut inner, seq, state, metrics);
        seq
    }

    /// Applies `state` at the seq a shared log gave it (`bus/`). Seqs at or below
    /// the newest are ignored (a log read again after an error); returns whether it
    /// was applied. Never waits on a subscriber.
    pub fn follow(&self, seq: u64, state: State, metrics: &Metrics) -> bool {
        let mut inner = self.lock();
        if seq <= inner.seq() {
            return false;
        }
        self.push(&mut inner, seq, state, metrics);
        true
    }

    /// Tells the newest seq as it moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Ends the stream for its subscribers: its log was made anew (a new epoch), and
    /// they reconnect to the stream that replaces it. Their feeds end at once.
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
        self.head.send_modify(|_| {});
    }

    /// Whether [`Channel::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    /// `state` at `seq` into every active chain, then the new truth.
    fn push(&self, inner: &mut Inner, seq: u64, state: State, metrics: &Metrics) {
        let summary = (self.summary_subscribers.load(Relaxed) > 0)
            .then(|| Arc::new(StateSummary::of(&state, self.summary_bins, &self.account)));
        let active = inner.chains.iter().flatten().count().max(1);
        for chain in inner.active() {
            let sequenced = chain.sequencer.follow(seq, &state);
            self.push_view(chain, sequenced, summary.clone(), active, metrics);
        }
        inner.truth = Some(Truth {
            seq,
            _charge: self.account.charge(memory::state_bytes(&state)),
            state,
            summary,
        });
        self.head.send_replace(seq);
    }

    /// A chain's next view into its history, as an update.
    fn push_view(
        &self,
        chain: &mut Chain,
        sequenced: Sequenced,
        summary: Option<Arc<StateSummary>>,
        active: usize,
        metrics: &Metrics,
    ) {
        let quantum_exp = chain.sequencer.tolerance().quantum_exp();
        chain.sequencer_charge.clear();
        chain
            .sequencer_charge
            .grow(memory::state_bytes(&sequenced.view));
        let prev = chain.history.back().and_then(|e| e.update.as_deref());
        let update = Arc::new(Update::new(
            sequenced,
            prev,
            &self.epoch,
            quantum_exp,
            summary.clone(),
            &self.account,
        ));
        if update.keyframe {
            metrics.keyframe();
        }
        let history = &mut chain.history;
        if history.len() >= self.history_len {
            history.pop_front();
        }
        // The update that just left the window keeps only its view.
        if history.len() >= self.window {
            let i = history.len() - self.window;
            if let Some(old) = history[i].update.take() {
                old.release();
            }
        }
        history.push_back(Entry {
            held: update.held(),
            update: Some(update),
            summary,
        });
        self.bound_frames(history, self.frame_cache / active);
    }

    /// Releases the frames of updates in the window past `frame_cache` bytes (the two
    /// newest always keep theirs): those updates leave the window.
    fn bound_frames(&self, history: &mut VecDeque<Entry>, frame_cache: usize) {
        let mut kept = 0;
        for (age, entry) in history.iter_mut().rev().enumerate() {
            let Some(update) = &entry.update else { break };
            kept += update.cached_bytes();
            if age >= 2 && kept > frame_cache {
                update.release();
                entry.update = None;
            }
        }
    }

    /// Frees memory under pressure: in every chain, every update but the newest leaves
    /// the window (its frames released), then the oldest states leave the histories
    /// until about `bytes` were given back or only the newest is left. Returns the
    /// bytes given back and the states dropped from the histories.
    pub fn shed(&self, bytes: usize) -> (usize, usize) {
        let before = self.account.used();
        let mut inner = self.lock();
        for chain in inner.active() {
            let newest = chain.history.len().saturating_sub(1);
            for entry in chain.history.range_mut(..newest) {
                if let Some(update) = entry.update.take() {
                    update.release();
                }
            }
        }
        let mut dropped = 0;
        while before.saturating_sub(self.account.used()) < bytes {
            let mut any = false;
            for chain in inner.active().filter(|c| c.history.len() > 1) {
                chain.history.pop_front();
                dropped += 1;
                any = true;
            }
            if !any {
                break;
            }
        }
        (before.saturating_sub(self.account.used()), dropped)
    }

    /// Bytes a state like `state` is expected to add to this stream: per active
    /// class, its view and, from what the newest update has encoded, its frames
    /// (three times the view for a stream's first state).
    pub fn cost_of(&self, state: &State) -> usize {
        let view = memory::state_bytes(state);
        let inner = self.lock();
        inner
            .chains
            .iter()
            .flatten()
            .map(|c| view + c.latest().map_or(3 * view, |u| u.cached_bytes()))
            .sum()
    }

    /// Bytes of the newest state and its frames, in every class: what a same-sized
    /// next state replaces once it is in.
    pub fn newest_bytes(&self) -> usize {
        let inner = self.lock();
        inner.chains.iter().flatten().map(Chain::newest_bytes).sum()
    }

    /// Bytes of encoded frames the stream keeps.
    pub fn cached_bytes(&self) -> usize {
        let inner = self.lock();
        inner.chains.iter().flatten().map(Chain::cached_bytes).sum()
    }

    /// Joins the stream in precision class `class` (starting the class if it is the
    /// first to ask): the class's newest update, the update to resume from (when
    /// `resume` names one still in its history, of this epoch), and a receiver for
    /// what follows. A subscriber that takes summaries (`summaries`) has the newest
    /// state's made at once. Pair with [`Channel::leave`].
    pub fn join(
        &self,
        class: usize,
        resume: Option<&Resume>,
        summaries: bool,
        metrics: &Metrics,
    ) -> Joined {
        let mut inner = self.lock();
        if inner.chains[class].is_none() {
            self.start_class(&mut inner, class, metrics);
        }
        if summaries {
            self.summary_subscribers.fetch_add(1, Relaxed);
            self.summarise_newest(&mut inner);
        }
        // Under the lock: the head seen is `latest`'s.
        let mut head = self.head.subscribe();
        head.mark_unchanged();
        let chain = inner.chain(class);
        let latest = chain.latest().cloned();
        let resume_from = resume.and_then(|r| {
            if r.epoch.as_deref() != Some(&*self.epoch) {
                return None; // a seq of another (or an unknown) numbering
            }
            chain.find(r.seq).map(|e| e.held.clone())
        });
        self.subscribers.fetch_add(1, Relaxed);
        Joined {
            latest,
            resume_from,
            head,
        }
    }

    /// Starts the chain of `class` from the truth: its first view is the newest state
    /// itself, a keyframe. From the next scheduled keyframe on its views are those of
    /// every other node's chain of this class.
    fn start_class(&self, inner: &mut Inner, class: usize, metrics: &Metrics) {
        let mut chain = Chain {
            sequencer: Sequencer::with_tolerance(
                self.classes.tolerance(class),
                self.keyframe_interval,
            ),
            sequencer_charge: self.account.charge(0),
            history: VecDeque::new(),
        };
        if let Some(truth) = &inner.truth {
            let sequenced = chain.sequencer.follow(truth.seq, &truth.state);
            let active = inner.chains.iter().flatten().count() + 1;
            let summary = truth.summary.clone();
            self.push_view(&mut chain, sequenced, summary, active, metrics);
        }
        inner.chains[class] = Some(chain);
    }

    /// Makes the newest state's summary, if not made yet, for every class's newest
    /// update.
    fn summarise_newest(&self, inner: &mut Inner) {
        let Some(truth) = inner.truth.as_mut() else {
            return;
        };
        let summary = truth
            .summary
            .get_or_insert_with(|| {
                Arc::new(StateSummary::of(
                    &truth.state,
                    self.summary_bins,
                    &self.account,
                ))
            })
            .clone();
        let seq = truth.seq;
        for chain in inner.active() {
            if let Some(entry) = chain.history.back_mut().filter(|e| e.held.seq == seq) {
                entry.summary.get_or_insert_with(|| summary.clone());
                if let Some(update) = &entry.update {
                    update.summary_or(|| summary.clone());
                }
            }
        }
    }

    /// The updates of `class` after seq `cursor` still in the window, at most `max`
    /// (oldest first), and how many after it are no longer there (with their
    /// summaries when `summaries`).
    pub fn since(&self, class: usize, cursor: u64, max: usize, summaries: bool) -> Since {
        let inner = self.lock();
        let history = &inner.chain(class).history;
        let start = history.partition_point(|e| e.held.seq <= cursor);
        let mut since = Since::default();
        // States between the cursor and the oldest retained one left the history. (A
        // cursor of 0 joined an empty stream: whatever came first is no gap.)
        if let (Some(front), true) = (history.get(start), cursor > 0) {
            since.lagged = front.held.seq.saturating_sub(cursor + 1);
        }
        for entry in history.range(start..) {
            match &entry.update {
                Some(u) if since.updates.len() < max => since.updates.push(u.clone()),
                Some(_) => break,
                None => {
                    since.lagged += 1;
                    if summaries {
                        since.lagged_summaries.extend(entry.summary.clone());
                    }
                }
            }
        }
        since
    }

    /// A subscriber left (`summaries`: one that took summaries).
    pub fn leave(&self, summaries: bool) {
        if summaries {
            self.summary_subscribers.fetch_sub(1, Relaxed);
        }
        self.subscribers.fetch_sub(1, Relaxed);
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Relaxed)
    }

    /// The newest update of the default class, if any.
    pub fn latest(&self) -> Option<Arc<Update>> {
        self.latest_in(self.classes.default_class())
    }

    /// The newest update of `class`, if it has started and has one.
    pub fn latest_in(&self, class: usize) -> Option<Arc<Update>> {
        let inner = self.lock();
        inner.chains[class].as_ref()?.latest().cloned()
    }

    /// The default class's view at `seq`, while it is in the history.
    pub fn view(&self, seq: u64) -> Option<Arc<View>> {
        self.view_in(self.classes.default_class(), seq)
    }

    /// The view of `class` at `seq`, while it is in the class's history.
    pub fn view_in(&self, class: usize, seq: u64) -> Option<Arc<View>> {
        let inner = self.lock();
        inner.chains[class]
            .as_ref()?
            .find(seq)
            .map(|e| e.held.view.clone())
    }

    /// How many of the default class's retained states still hold their encoded
    /// frames (at most the ring's size) and how many are kept in all.
    pub fn retained(&self) -> (usize, usize) {
        let inner = self.lock();
        let history = &inner.chain(self.classes.default_class()).history;
        let with_frames = history.iter().filter(|e| e.update.is_some()).count();
        (with_frames, history.len())
    }

    /// The classes started, by their ε.
    pub fn active_classes(&self) -> Vec<f64> {
        let inner = self.lock();
        (0..self.classes.len())
            .filter(|c| inner.chains[*c].is_some())
            .map(|c| self.classes.tolerance(c).epsilon())
            .collect()
    }

    /// Seq, step and size of the newest state.
    pub fn head(&self) -> Head {
        self.lock()
            .truth
            .as_ref()
            .map_or(Head::default(), |t| Head {
                seq: t.seq,
                step: t.state.step,
                oscillators: t.state.len(),
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("stream lock poisoned")
    }
}
