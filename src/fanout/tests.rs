//! The slow-consumer policy and the shared encodings, without sockets: a real
//! [`Channel`] publishes, a [`Feed`] decides, and the frames it hands out are decoded
//! and applied as a client would.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::*;
use crate::{
    codec::{self, Encoding, Frame, FrameKind},
    config::StreamConfig,
    delta::{self, Tolerance},
    memory::Budget,
    metrics::Metrics,
    model::State,
};

/// A budget no test here reaches.
fn unlimited() -> Arc<Budget> {
    Budget::new(usize::MAX)
}

fn config(eps: f64, keyframe_interval: u64, history: usize) -> StreamConfig {
    StreamConfig {
        tolerance: Tolerance::new(eps).unwrap(),
        keyframe_interval,
        history,
        max_streams: 8,
        frame_cache_bytes: crate::config::defaults::FRAME_CACHE_BYTES,
        precision_classes: vec![],
        summary_bins: 16,
    }
}

/// A state in which the first eight phases move every step.
fn state(step: u64, n: usize) -> State {
    State {
        step,
        phases: (0..n)
            .map(|i| i as f64 + if i < 8 { step as f64 * 0.01 } else { 0.0 })
            .collect(),
        spins: vec![1; n],
        energy: step as f64,
        timestamp: None,
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(true, tokio_util::task::TaskTracker::new()).unwrap())
}

/// A counter's value in the metrics scrape.
fn counter(m: &Metrics, name_and_labels: &str) -> f64 {
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What a client holds after applying `frames` to `held`.
fn apply(held: &mut Option<State>, frames: &[Outgoing], e: Encoding) {
    for f in frames {
        let bytes = f.message.clone().into_data();
        match codec::decode_frame(e, &bytes).unwrap() {
            Frame::Full { state, .. } => *held = Some(state),
            Frame::Delta(d) => delta::apply(held.as_mut().unwrap(), &d).unwrap(),
        }
    }
}

impl Setup {
    /// Every frame in `encoding` and the stream's default class.
    fn wants(&self, encoding: Encoding) -> Wants {
        Wants::whole(encoding, self.channel.classes().default_class())
    }
}

struct Setup {
    channel: Arc<Channel>,
    metrics: Arc<Metrics>,
}

impl Setup {
    fn new(eps: f64, keyframe_interval: u64, outbox: usize) -> Setup {
        Setup {
            channel: Arc::new(Channel::new(
                "t".into(),
                "e1",
                &config(eps, keyframe_interval, 64),
                outbox,
                &unlimited(),
            )),
            metrics: metrics(),
        }
    }

    fn publish(&self, step: u64, n: usize) -> u64 {
        self.channel.publish(state(step, n), &self.metrics)
    }

    fn feed(&self, wants: Wants, resume: Option<u64>, outbox: usize) -> Feed {
        let epoch = Some(self.channel.epoch().to_owned());
        let resume = resume.map(|seq| Resume { seq, epoch });
        Feed::join(
            self.channel.clone(),
            wants,
            resume.as_ref(),
            outbox,
            self.metrics.clone(),
        )
    }

    fn view(&self, seq: u64) -> State {
        State::clone(&self.channel.view(seq).unwrap())
    }
}

/// Takes what is waiting now (the updates are already in the ring) and returns the
/// frames the feed hands out for it at `now`.
async fn take(feed: &mut Feed, now: Instant) -> Vec<Outgoing> {
    let batch = tokio::time::timeout(Duration::from_secs(1), feed.recv())
        .await
        .expect("an update waits")
        .expect("the stream is open");
    feed.on_batch(batch, now, None)
}

#[tokio::test]
async fn in_step_each_update_is_its_shared_delta() {
    let s = Setup::new(1e-3, 1000, 64);
    s.publish(0, 64);
    for e in Encoding::ALL {
        let mut feed = s.feed(s.wants(e), None, 64);
        let mut held = None;
        let first = feed.start(Instant::now());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, FrameKind::Full);
        apply(&mut held, &first, e);
        let mut other = s.feed(s.wants(e), None, 64);
        other.start(Instant::now());
        for _ in 0..5 {
            let seq = s.publish(s.channel.head().seq + 1, 64);
            let frames = take(&mut feed, Instant::now()).await;
            let theirs = take(&mut other, Instant::now()).await;
            assert_eq!(frames.len(), 1);
            assert_eq!((frames[0].seq, frames[0].kind), (seq, FrameKind::Delta));
            apply(&mut held, &frames, e);
            assert_eq!(held.as_ref(), Some(&s.view(seq)));
            // Two subscribers in step share the same bytes, not two encodings.
            assert_eq!(
                frames[0].message.clone().into_data().as_ptr(),
                theirs[0].message.clone().into_data().as_ptr()
            );
        }
    }
}

#[tokio::test]
async fn several_waiting_go_out_in_one_batch() {
    let s = Setup::new(1e-3, 1000, 64);
    s.publish(0, 32);
    let e = Encoding::Protobuf;
    let mut feed = s.feed(s.wants(e), None, 64);
    let mut held = None;
    apply(&mut held, &feed.start(Instant::now()), e);
    for step in 1..=5 {
        s.publish(step, 32);
    }
    let frames = take(&mut feed, Instant::now()).await;
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    assert!(frames.iter().all(|f| f.kind == FrameKind::Delta));
    apply(&mut held, &frames, e);
    assert_eq!(held.unwrap(), s.view(6));
    assert_eq!(
        counter(
            &s.metrics,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn lagged_past_the_outbox_skips_to_the_newest_with_one_catch_up_delta() {
    let outbox = 4;
    let s = Setup::new(1e-3, 1000, outbox);
    s.publish(0, 64);
    for e in Encoding::ALL {
        let mut feed = s.feed(s.wants(e), None, outbox);
        let mut held = None;
        apply(&mut held, &feed.start(Instant::now()), e);
        let from = s.channel.head().seq;
        let before = counter(
            &s.metrics,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}",
        );
        // Ten states while the subscriber does not read: the ring holds four.
        for _ in 0..10 {
            s.publish(s.channel.head().seq + 1, 64);
        }
        let newest = s.channel.head().seq;
        let frames = take(&mut feed, Instant::now()).await;
        assert_eq!(frames.len(), 1, "only the newest");
        assert_eq!((frames[0].seq, frames[0].kind), (newest, FrameKind::Delta));
        let bytes = frames[0].message.clone().into_data();
        let Frame::Delta(d) = codec::decode_frame(e, &bytes).unwrap() else {
            unreachable!()
        };
        assert_eq!(d.base_seq, from, "a catch-up delta from what it holds");
        apply(&mut held, &frames, e);
        assert_eq!(held.unwrap(), s.view(newest));
        let after = counter(
            &s.metrics,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}",
        );
        assert_eq!(after - before, 9.0, "the nine skipped states are counted");
    }
}

#[tokio::test]
async fn max_hz_sends_the_newest_state_at_each_slot() {
    let s = Setup::new(1e-3, 1000, 64);
    s.publish(0, 32);
    let e = Encoding::Json;
    let interval = Duration::from_millis(100);
    let mut feed = s.feed(
        Wants {
            min_interval: Some(interval),
            ..s.wants(e)
        },
        None,
        64,
    );
    let t0 = Instant::now();
    let mut held = None;
    apply(&mut held, &feed.start(t0), e);
    assert_eq!(feed.slot(), None, "nothing waits yet");
    // Three states inside the first interval: nothing goes out, the newest waits.
    for step in 1..=3 {
        s.publish(step, 32);
        let frames = take(&mut feed, t0 + Duration::from_millis(10 * step)).await;
        assert!(frames.is_empty());
    }
    assert_eq!(feed.slot(), Some(t0 + interval));
    let frames = feed.on_slot(t0 + interval);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].seq, 4,
        "the newest, as one delta over the skipped two"
    );
    apply(&mut held, &frames, e);
    assert_eq!(held.as_ref(), Some(&s.view(4)));
    assert_eq!(feed.slot(), None);
    // A state after the slot has passed goes out at once.
    s.publish(4, 32);
    let later = t0 + interval * 3;
    let frames = take(&mut feed, later).await;
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![5]);
    // States skipped for max_hz are not conflation drops.
    assert_eq!(
        counter(
            &s.metrics,
            "mcp_pcc_messages_dropped_total{reason=\"conflated\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn resync_sends_the_newest_state_whole() {
    let s = Setup::new(1e-3, 1000, 64);
    s.publish(0, 32);
    let e = Encoding::Protobuf;
    let mut feed = s.feed(s.wants(e), None, 64);
    feed.start(Instant::now());
    s.publish(1, 32);
    take(&mut feed, Instant::now()).await;
    let frames = feed.resync();
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].seq, frames[0].kind), (2, FrameKind::Full));
    let mut held = None;
    apply(&mut held, &frames, e);
    assert_eq!(held.unwrap(), s.view(2));
    // And in step again from there.
    s.publish(2, 32);
    let frames = take(&mut feed, Instant::now()).await;
    assert_eq!(frames[0].kind, FrameKind::Delta);
}

#[tokio::test]
async fn keyframes_and_shape_changes_are_full_frames() {
    let s = Setup::new(1e-3, 3, 64);
    s.publish(0, 32);
    let e = Encoding::Json;
    let mut feed = s.feed(s.wants(e), None, 64);
    let mut held = None;
    apply(&mut held, &feed.start(Instant::now()), e);
    let mut kinds = Vec::new();
    for step in 1..=6 {
        // Step 5 changes the number of oscillators.
        s.publish(step, if step == 5 { 16 } else { 32 });
        let frames = take(&mut feed, Instant::now()).await;
        apply(&mut held, &frames, e);
        assert_eq!(held.as_ref(), Some(&s.view(frames[0].seq)));
        kinds.push((frames[0].seq, frames[0].kind));
    }
    use FrameKind::{Delta, Full};
    // Seq 4: the schedule (every 3); 6: a shape change; 7: the change back.
    assert_eq!(
        kinds,
        vec![
            (2, Delta),
            (3, Delta),
            (4, Full),
            (5, Delta),
            (6, Full),
            (7, Full)
        ]
    );
}

#[tokio::test]
async fn resume_starts_with_a_delta_from_the_state_held_and_full_frames_only_when_asked() {
    let s = Setup::new(1e-3, 1000, 64);
    for step in 0..10 {
        s.publish(step, 32);
    }
    let e = Encoding::Protobuf;
    let mut resumed = s.feed(s.wants(e), Some(4), 64);
    let frames = resumed.start(Instant::now());
    assert_eq!((frames[0].seq, frames[0].kind), (10, FrameKind::Delta));
    let mut held = Some(s.view(4));
    apply(&mut held, &frames, e);
    assert_eq!(held.unwrap(), s.view(10));
    let mut full_only = s.feed(
        Wants {
            deltas: false,
            ..s.wants(e)
        },
        None,
        64,
    );
    full_only.start(Instant::now());
    s.publish(10, 32);
    let frames = take(&mut full_only, Instant::now()).await;
    assert_eq!(frames[0].kind, FrameKind::Full);
    assert_eq!(
        counter(&s.metrics, "phasecast_resumes_total{result=\"hit\"}"),
        1.0
    );
}

/// Subscribers in step share one encoding per format: a thousand of them get the
/// same bytes, not a thousand encodings; catch-up deltas from one base are shared too.
#[test]
fn subscribers_in_step_share_one_encoding_per_format() {
    let m = metrics();
    let c = Channel::new("t".into(), "e1", &config(1e-3, 100, 8), 8, &unlimited());
    c.publish(state(1, 64), &m);
    let prev = c.latest().unwrap();
    c.publish(state(2, 64), &m);
    let next = c.latest().unwrap();
    for e in Encoding::ALL {
        let frames: Vec<_> = (0..1000)
            .map(|_| next.frame_for(Form::whole(e), Some(&prev.held()), &m))
            .collect();
        let first = frames[0].message.clone().into_data();
        assert_eq!(frames[0].kind, FrameKind::Delta);
        for f in &frames {
            assert_eq!(f.message.clone().into_data().as_ptr(), first.as_ptr());
        }
        let a = next.full(Form::whole(e), &m);
        let b = next.full(Form::whole(e), &m);
        assert_eq!(
            a.message.into_data().as_ptr(),
            b.message.into_data().as_ptr()
        );
    }
    c.publish(state(3, 64), &m);
    let third = c.latest().unwrap();
    for e in Encoding::ALL {
        let a = third.frame_for(Form::whole(e), Some(&prev.held()), &m);
        let b = third.frame_for(Form::whole(e), Some(&prev.held()), &m);
        assert_eq!(a.kind, FrameKind::Delta);
        assert_eq!(
            a.message.into_data().as_ptr(),
            b.message.into_data().as_ptr()
        );
    }
}

/// Where every phase moves (ε = 0), a delta is not smaller than the full frame: each
/// encoding sends the full frame, decided once per update. (The stream has no epoch
/// here, so the frames compared are the state alone: in protobuf a dense delta is
/// then within a byte of the full frame, and the epoch would tip it.)
#[test]
fn a_delta_that_saves_nothing_is_sent_as_the_full_frame() {
    let m = metrics();
    let c = Channel::new("t".into(), "", &config(0.0, 100, 8), 8, &unlimited());
    let dense = |step: u64| State {
        phases: (0..32).map(|i| i as f64 + step as f64 * 0.37).collect(),
        ..state(step, 32)
    };
    c.publish(dense(1), &m);
    let prev = c.latest().unwrap();
    c.publish(dense(2), &m);
    let next = c.latest().unwrap();
    for e in Encoding::ALL {
        let f = next.frame_for(Form::whole(e), Some(&prev.held()), &m);
        assert_eq!(f.kind, FrameKind::Full, "{e}");
        assert_eq!(
            f.message.into_data().as_ptr(),
            next.full(Form::whole(e), &m).message.into_data().as_ptr()
        );
    }
}

#[test]
fn join_finds_resume_points_only_in_the_history() {
    let m = metrics();
    let c = Channel::new("t".into(), "e1", &config(0.0, 100, 4), 8, &unlimited());
    for step in 1..=10 {
        c.publish(state(step, 8), &m);
    }
    let at = |seq, epoch: Option<&str>| {
        c.join(
            c.classes().default_class(),
            Some(&Resume {
                seq,
                epoch: epoch.map(str::to_owned),
            }),
            false,
            &m,
        )
        .resume_from
        .map(|h| h.seq)
    };
    assert_eq!(at(7, Some("e1")), Some(7));
    assert_eq!(c.view(7).unwrap().step, 7);
    assert_eq!(at(10, Some("e1")), Some(10));
    assert_eq!(at(6, Some("e1")), None);
    assert_eq!(at(11, Some("e1")), None);
    // The same seq of another epoch (a restarted server) is not this state, nor is a
    // seq whose epoch the client does not know.
    assert_eq!(at(7, Some("e0")), None);
    assert_eq!(at(7, None), None);
    assert_eq!(c.head().seq, 10);
}

/// Two nodes reading one log hold the same view at every seq, whichever of them
/// produced it; seqs already held (a log read again after an error) are ignored; a
/// seq the log skipped still leaves the others findable for a resume.
#[test]
fn following_a_log_ignores_seqs_already_held() {
    let m = metrics();
    let origin = Channel::new("t".into(), "e1", &config(1e-3, 100, 8), 8, &unlimited());
    let other = Channel::new("t".into(), "e1", &config(1e-3, 100, 8), 8, &unlimited());
    for seq in 1..=3 {
        assert!(origin.follow(seq, state(seq, 4), &m));
        assert!(other.follow(seq, state(seq, 4), &m));
    }
    assert!(!other.follow(2, state(2, 4), &m));
    assert!(!other.follow(3, state(3, 4), &m));
    for seq in 1..=3 {
        assert_eq!(
            **origin.view(seq).unwrap(),
            **other.view(seq).unwrap(),
            "seq {seq}"
        );
    }
    assert!(other.follow(6, state(6, 4), &m));
    assert_eq!(other.head().seq, 6);
    assert_eq!(other.view(6).unwrap().step, 6);
    assert!(other.view(5).is_none());
    let resumed = other.join(
        other.classes().default_class(),
        Some(&Resume {
            seq: 3,
            epoch: Some("e1".into()),
        }),
        false,
        &m,
    );
    assert_eq!(resumed.resume_from.map(|h| h.seq), Some(3));
}

/// Only the newest updates, as many as the ring holds, keep their encoded frames;
/// older states are kept as views and still serve a resume with a delta.
#[test]
fn states_past_the_ring_keep_only_their_view_and_still_serve_a_resume() {
    let m = metrics();
    let c = Channel::new("t".into(), "e1", &config(1e-3, 1000, 32), 4, &unlimited());
    for step in 1..=20 {
        c.publish(state(step, 64), &m);
    }
    assert_eq!(c.retained(), (4, 20));
    let oldest = c
        .join(
            c.classes().default_class(),
            Some(&Resume {
                seq: 1,
                epoch: Some("e1".into()),
            }),
            false,
            &m,
        )
        .resume_from
        .expect("seq 1 is in the history");
    let latest = c.latest().unwrap();
    let frame = latest.frame_for(Form::whole(Encoding::Protobuf), Some(&oldest), &m);
    assert_eq!(frame.kind, FrameKind::Delta);
    let mut held = Some(State::clone(&oldest.view));
    let out = Outgoing {
        message: frame.message,
        seq: latest.seq,
        kind: frame.kind,
        len: frame.len,
        accepted_at: latest.accepted_at,
    };
    apply(&mut held, &[out], Encoding::Protobuf);
    assert_eq!(held.as_ref(), Some(&**latest.view));
}

/// Large states keep frames for a few updates only: the frames kept stay near the
/// budget of the window however many states go by, and the updates that released
/// theirs still serve subscribers, in step or catching up.
#[tokio::test]
async fn the_frames_kept_for_large_states_are_bounded_in_bytes() {
    let s = Setup::new(1e-3, 1000, 64);
    // Every phase moves every step: each update's frame is a full frame of 1.3 MB.
    let dense = |step: u64| State {
        phases: (0..65_536)
            .map(|i| i as f64 * 1e-4 + step as f64 * 0.37)
            .collect(),
        ..state(step, 65_536)
    };
    s.channel.publish(dense(0), &s.metrics);
    let e = Encoding::Json;
    let mut feed = s.feed(s.wants(e), None, 64);
    let mut held = None;
    apply(&mut held, &feed.start(Instant::now()), e);
    for step in 1..=40 {
        s.channel.publish(dense(step), &s.metrics);
        let frames = take(&mut feed, Instant::now()).await;
        apply(&mut held, &frames, e);
    }
    let newest = s.channel.head().seq;
    assert_eq!(
        held.as_ref(),
        Some(&s.view(newest)),
        "exact through releases"
    );
    let full = s
        .channel
        .latest()
        .unwrap()
        .full(Form::whole(e), &s.metrics)
        .len;
    let kept = s.channel.cached_bytes();
    assert!(
        kept <= (16 << 20) + 2 * full,
        "{kept} bytes kept for frames of {full}"
    );
    let (with_frames, all) = s.channel.retained();
    assert!(with_frames < 40, "{with_frames} of {all} keep their frames");
    // A subscriber that resumes from an old state gets one delta to the newest.
    let mut late = s.feed(s.wants(e), Some(3), 64);
    let frames = late.start(Instant::now());
    let mut resumed = Some(s.view(3));
    apply(&mut resumed, &frames, e);
    assert_eq!(resumed, Some(s.view(newest)));
}

/// Subscribers of two classes and two projections, 100 of each in step: one encoding
/// per (format, class, fields) in use, shared by all of its subscribers; each class
/// holds its own views (lossless exact, 10⁻³ within ε), and the summary is made once
/// per state for every class.
#[tokio::test]
async fn each_class_and_projection_shares_one_encoding() {
    let mut config = config(0.0, 1000, 64);
    config.precision_classes = vec![Tolerance::new(1e-3).unwrap()];
    let channel = Arc::new(Channel::new("t".into(), "e1", &config, 64, &unlimited()));
    let metrics = metrics();
    channel.publish(state(0, 64), &metrics);
    let lossy = channel.classes().find(1e-3).unwrap();
    let summary: crate::projection::Projection = "phases,summary".parse().unwrap();
    let mut cohorts = Vec::new();
    for e in Encoding::ALL {
        for class in [0, lossy] {
            for projection in [crate::projection::Projection::DEFAULT, summary] {
                let wants = Wants {
                    projection,
                    ..Wants::whole(e, class)
                };
                let feeds: Vec<_> = (0..100)
                    .map(|_| Feed::join(channel.clone(), wants, None, 64, metrics.clone()))
                    .collect();
                cohorts.push((wants, feeds));
            }
        }
    }
    assert_eq!(channel.active_classes(), vec![0.0, 1e-3]);
    for step in 1..=5 {
        channel.publish(state(step, 64), &metrics);
        let mut pointers = std::collections::HashSet::new();
        for (wants, feeds) in &mut cohorts {
            let mut first = None;
            for feed in feeds.iter_mut() {
                let batch = feed.recv().await.unwrap();
                let frames = feed.on_batch(batch, Instant::now(), None);
                let frame = frames.last().unwrap();
                let bytes = frame.message.clone().into_data();
                let p = *first.get_or_insert(bytes.as_ptr());
                assert_eq!(bytes.as_ptr(), p, "{wants:?}: shared");
            }
            pointers.insert(first.unwrap());
        }
        // 2 formats × 2 classes × 2 projections, no two the same.
        assert_eq!(pointers.len(), 8, "step {step}");
    }
    let truth = state(5, 64);
    let exact = channel.view_in(0, 6).unwrap();
    assert_eq!(**exact, truth);
    let within = channel.view_in(lossy, 6).unwrap();
    for (v, t) in within.phases.iter().zip(&truth.phases) {
        assert!((v - t).abs() <= 1e-3);
    }
    let (a, b) = (
        channel.latest_in(0).unwrap(),
        channel.latest_in(lossy).unwrap(),
    );
    assert!(
        Arc::ptr_eq(a.summary().unwrap(), b.summary().unwrap()),
        "one summary per state"
    );
}

/// A `max_hz` subscriber taking summaries, read at random moments while states come
/// in random bursts (so it lags past its outbox, is stale, or waits for its slot):
/// at most one frame goes out at a time, and every frame's envelope counts each state
/// since its previous frame exactly once.
#[tokio::test]
async fn envelopes_count_each_state_once_however_the_feed_is_read() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for e in Encoding::ALL {
        let s = Setup::new(0.0, 50, 4);
        s.publish(0, 16);
        let wants = Wants {
            projection: "summary".parse().unwrap(),
            min_interval: Some(Duration::from_millis(50)),
            ..s.wants(e)
        };
        let mut feed = s.feed(wants, None, 4);
        let mut now = Instant::now();
        let mut step = 0;
        let mut last_sent = None;
        let mut check = |frames: Vec<Outgoing>| {
            assert!(frames.len() <= 1, "{e:?}: one frame a slot at most");
            for f in frames {
                let bytes = f.message.clone().into_data();
                let (_, extras) = codec::decode_frame_parts(e, &bytes).unwrap();
                let states = extras.envelope.expect("an envelope").states;
                if let Some(prev) = last_sent {
                    assert_eq!(
                        u64::from(states),
                        f.seq - prev,
                        "{e:?}: frame of seq {}",
                        f.seq
                    );
                }
                last_sent = Some(f.seq);
            }
        };
        check(feed.start(now));
        for _ in 0..2000 {
            for _ in 0..rng.random_range(0..12) {
                step += 1;
                s.publish(step, 16);
            }
            now += Duration::from_millis(rng.random_range(0..40));
            if rng.random_bool(0.3) {
                if let Some(slot) = feed.slot() {
                    if slot <= now {
                        check(feed.on_slot(now));
                    }
                }
            }
            if let Some(Some(batch)) = futures_util::FutureExt::now_or_never(feed.recv()) {
                let stale = rng.random_bool(0.2).then(std::time::Instant::now);
                check(feed.on_batch(batch, now, stale));
            }
        }
    }
}

/// Counts the states the dispatch offers it.
#[derive(Default)]
struct Counting {
    delivered: std::sync::atomic::AtomicUsize,
}

impl Outlet for Counting {
    fn deliver(&self) {
        self.delivered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn wake(&self) {}
}

/// More subscribers than a shard holds: they are spread over shards, every one is
/// offered every state once, and one that left is offered nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_offers_every_state_to_every_outlet_across_shards() {
    use std::sync::atomic::Ordering::SeqCst;
    let s = Setup::new(0.0, 0, 64);
    let dispatch = Dispatch::new(tokio::runtime::Handle::current());
    let n = SHARD_OUTLETS * 2 + 1;
    let states = 3;
    let outlets: Vec<Arc<Counting>> = (0..n).map(|_| Arc::default()).collect();
    let mut members: Vec<Membership> = outlets
        .iter()
        .map(|o| dispatch.join(&s.channel, o.clone()))
        .collect();
    let leaver = outlets.len() - 1;
    drop(members.pop());
    for step in 1..=states as u64 {
        s.publish(step, 8);
        // The next state once every remaining outlet was offered this one.
        tokio::time::timeout(Duration::from_secs(10), async {
            while outlets[..leaver]
                .iter()
                .any(|o| o.delivered.load(SeqCst) < step as usize)
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("every outlet offered the state");
    }
    let offered: Vec<usize> = outlets.iter().map(|o| o.delivered.load(SeqCst)).collect();
    assert!(
        offered[..leaver].iter().all(|&k| k == states),
        "each state offered once to each outlet: {offered:?}"
    );
    assert_eq!(
        outlets[leaver].delivered.load(SeqCst),
        0,
        "the one that left"
    );
}
