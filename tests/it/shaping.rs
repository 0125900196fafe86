//! Each subscriber gets what it asked for: a precision class (`?epsilon=`), some parts
//! of the state (`?fields=`), summaries made once per state by the server, and, at
//! its own pace (`max_hz`), envelopes that keep what it did not see.

use std::{collections::HashMap, f64::consts::TAU};

use phasecast::{
    codec::{Encoding, FrameKind},
    model::State,
    projection::Projection,
};
use phasecast_client::{ClientError, SubscribeOptions, Subscriber, Summary};

use crate::support::{within, TestServer};

/// A state whose phase 0 creeps by `creep` radians a step (below ε, so a view that
/// compared against the previous state would never move it) while the others move
/// by small amounts each step (so every lossless frame is a full one).
fn creeping(step: u64, n: usize, creep: f64) -> State {
    State {
        step,
        phases: (0..n)
            .map(|i| {
                if i == 0 {
                    1.0 + step as f64 * creep
                } else {
                    (i as f64 * 0.7 + step as f64 * 1.7e-4 * (1 + i % 5) as f64) % TAU
                }
            })
            .collect(),
        spins: (0..n)
            .map(|i| {
                if (i as u64 + step / 9) % 4 == 0 {
                    -1
                } else {
                    1
                }
            })
            .collect(),
        energy: -(step as f64) * 0.25,
        timestamp: Some(1_764_000_000.0 + step as f64 * 0.005),
    }
}

async fn connect(options: SubscribeOptions) -> Subscriber {
    within("subscribe", Subscriber::connect(&options))
        .await
        .expect("subscribe")
}

/// Publishes `states` (seq = step, the stream being new) once `subscribers` are in.
async fn publish_all(server: &TestServer, subscribers: usize, states: &[State]) {
    server
        .wait_for_health("subscribers in", |h| h["subscribers"] == subscribers)
        .await;
    let publisher = server.publisher(Encoding::Protobuf);
    for s in states {
        within("publish", publisher.publish(s))
            .await
            .expect("accepted");
    }
}

/// Reads frames until seq `last`, calling `check` with each frame's seq and kind and
/// the subscriber (its verified state, summary and envelope).
async fn read_until(
    sub: &mut Subscriber,
    last: u64,
    mut check: impl FnMut(u64, FrameKind, &Subscriber),
) {
    loop {
        let r = within("next frame", sub.next_frame())
            .await
            .expect("a frame")
            .expect("open");
        check(r.seq, r.kind, sub);
        if r.seq >= last {
            return;
        }
    }
}

/// One lossless subscriber and one at ε = 10⁻³ on one stream, in both formats: both
/// verify every checksum (no resync), the lossless one holds the producer's states
/// bit for bit, the other every phase within ε at every seq, with a phase creeping
/// by 0.4·ε a step; and the 10⁻³ class costs less than half the lossless bytes.
#[tokio::test]
async fn lossless_and_lossy_subscribers_share_a_stream_each_exact_to_its_class() {
    let eps = 1e-3;
    let server = TestServer::with(|c| c.subscriber.outbox_frames = 1024).await;
    let last = 400;
    let truth: HashMap<u64, State> = (1..=last)
        .map(|s| (s, creeping(s, 64, 0.4 * eps)))
        .collect();
    let mut subs = Vec::new();
    for encoding in Encoding::ALL {
        for epsilon in [None, Some(eps)] {
            let mut options = SubscribeOptions::new(server.ws()).encoding(encoding);
            if let Some(e) = epsilon {
                options = options.epsilon(e);
            }
            subs.push((encoding, epsilon, connect(options).await));
        }
    }
    let states: Vec<_> = (1..=last).map(|s| truth[&s].clone()).collect();
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|(encoding, epsilon, mut sub)| {
            let truth = truth.clone();
            tokio::spawn(async move {
                let mut expected = 1;
                let mut bytes = 0usize;
                loop {
                    let r = within("next frame", sub.next_frame())
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(
                        r.seq, expected,
                        "{encoding} {epsilon:?}: every seq, in order"
                    );
                    bytes += r.bytes;
                    let (held, want) = (sub.state().unwrap(), &truth[&r.seq]);
                    match epsilon {
                        None => assert_eq!(held, want, "{encoding} lossless seq {}", r.seq),
                        Some(e) => {
                            assert_eq!(
                                (held.step, &held.spins, held.energy),
                                (want.step, &want.spins, want.energy)
                            );
                            for (i, (h, w)) in held.phases.iter().zip(&want.phases).enumerate() {
                                assert!(
                                    (h - w).abs() <= e,
                                    "{encoding} seq {} phase {i}: {h} vs {w}",
                                    r.seq
                                );
                            }
                        }
                    }
                    if r.seq == 400 {
                        break;
                    }
                    expected += 1;
                }
                assert_eq!(
                    sub.resyncs(),
                    0,
                    "{encoding} {epsilon:?}: every checksum verified"
                );
                (encoding, epsilon, bytes)
            })
        })
        .collect();
    publish_all(&server, 4, &states).await;
    let mut bytes = HashMap::new();
    for t in tasks {
        let (encoding, epsilon, b) = t.await.unwrap();
        bytes.insert((encoding, epsilon.is_some()), b);
    }
    for encoding in Encoding::ALL {
        let (lossless, lossy) = (bytes[&(encoding, false)], bytes[&(encoding, true)]);
        assert!(
            lossy * 2 < lossless,
            "{encoding}: {lossy} bytes at 10⁻³ vs {lossless} lossless"
        );
    }
    let health = server.health().await;
    assert_eq!(
        health["precision_classes"],
        serde_json::json!([0.0, 0.0001, 0.001, 0.01])
    );
    assert_eq!(
        health["streams"][0]["precision_classes_active"],
        serde_json::json!([0.0, 0.001])
    );
    server.shutdown().await;
}

/// Kuramoto r and ψ, magnetisation and the histogram of `state`, computed here.
fn expected_summary(state: &State, bins: usize) -> (f64, f64, f64, Vec<u32>) {
    let n = state.phases.len() as f64;
    let re = state.phases.iter().map(|p| p.cos()).sum::<f64>() / n;
    let im = state.phases.iter().map(|p| p.sin()).sum::<f64>() / n;
    let m = state.spins.iter().map(|s| f64::from(*s)).sum::<f64>() / state.spins.len() as f64;
    let mut histogram = vec![0u32; bins];
    for p in &state.phases {
        let wrapped = p - TAU * (p / TAU).floor();
        histogram[((wrapped * bins as f64 / TAU) as usize).min(bins - 1)] += 1;
    }
    ((re * re + im * im).sqrt(), im.atan2(re), m, histogram)
}

fn assert_summary(s: &Summary, want: &State, bins: usize, what: &str) {
    let (r, psi, m, histogram) = expected_summary(want, bins);
    assert!(
        (f64::from(s.r) - r).abs() < 1e-6,
        "{what}: r {} vs {r}",
        s.r
    );
    assert!(
        (f64::from(s.psi) - psi).abs() < 1e-5,
        "{what}: ψ {} vs {psi}",
        s.psi
    );
    assert_eq!(f64::from(s.magnetization), m as f32 as f64, "{what}");
    assert_eq!(s.energy, want.energy as f32, "{what}");
    assert_eq!(s.histogram, histogram, "{what}");
}

/// Summary subscribers get the server's summary of every state, equal to one computed
/// here from the producer's state, whether they take the arrays (within ε) or not; a
/// summary-only subscriber holds no arrays and gets frames without a body.
#[tokio::test]
async fn summaries_match_an_independent_computation_on_every_frame() {
    let bins = 12;
    let server = TestServer::with(|c| {
        c.subscriber.outbox_frames = 1024;
        c.stream.summary_bins = bins;
    })
    .await;
    let last = 300;
    let truth: HashMap<u64, State> = (1..=last).map(|s| (s, creeping(s, 48, 3e-3))).collect();
    let only: Projection = "summary".parse().unwrap();
    let with_phases: Projection = "phases,summary".parse().unwrap();
    let mut subs = Vec::new();
    for encoding in Encoding::ALL {
        subs.push((
            encoding,
            only,
            connect(
                SubscribeOptions::new(server.ws())
                    .encoding(encoding)
                    .fields(only),
            )
            .await,
        ));
        let options = SubscribeOptions::new(server.ws())
            .encoding(encoding)
            .fields(with_phases)
            .epsilon(1e-3);
        subs.push((encoding, with_phases, connect(options).await));
    }
    let states: Vec<_> = (1..=last).map(|s| truth[&s].clone()).collect();
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|(encoding, fields, mut sub)| {
            let truth = truth.clone();
            tokio::spawn(async move {
                let mut frames = 0;
                read_until(&mut sub, last, |seq, kind, sub| {
                    frames += 1;
                    let what = format!("{encoding} {fields} seq {seq}");
                    let want = &truth[&seq];
                    assert_summary(
                        sub.summary().expect("a summary on every frame"),
                        want,
                        bins,
                        &what,
                    );
                    let held = sub.state().unwrap();
                    assert!(
                        held.spins.is_empty() && held.timestamp.is_none() && held.energy == 0.0,
                        "{what}"
                    );
                    if fields.phases() {
                        assert_eq!(held.phases.len(), want.phases.len());
                        for (h, w) in held.phases.iter().zip(&want.phases) {
                            assert!((h - w).abs() <= 1e-3, "{what}");
                        }
                    } else {
                        assert!(held.phases.is_empty(), "{what}");
                        assert_eq!(
                            kind,
                            FrameKind::Full,
                            "{what}: frames without a body stand alone"
                        );
                    }
                })
                .await;
                assert_eq!(sub.resyncs(), 0);
                assert_eq!(frames, last, "{encoding} {fields}: a frame per state");
            })
        })
        .collect();
    publish_all(&server, 4, &states).await;
    for t in tasks {
        t.await.unwrap();
    }
    server.shutdown().await;
}

/// A subscriber at 10 Hz taking summaries gets fewer frames than states, but each
/// frame's envelope covers every state since the previous one: a spike of energy and
/// of desynchronisation that lasted one step, between two of its frames, is in one of
/// them, and the envelopes count every state once.
#[tokio::test]
async fn envelopes_keep_a_one_step_spike_between_two_frames() {
    let server = TestServer::start().await;
    let options = SubscribeOptions::new(server.ws())
        .encoding(Encoding::Protobuf)
        .fields("summary".parse().unwrap())
        .max_hz(10.0);
    let mut sub = connect(options).await;
    let json = SubscribeOptions::new(server.ws())
        .encoding(Encoding::Json)
        .fields("summary,energy".parse().unwrap())
        .max_hz(10.0);
    let mut json_sub = connect(json).await;
    server
        .wait_for_health("subscribers in", |h| h["subscribers"] == 2)
        .await;
    let publisher = server.publisher(Encoding::Protobuf);
    let last = 120u64;
    let spike_at = 61;
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        for step in 1..=last {
            tick.tick().await;
            let mut s = creeping(step, 32, 1e-3);
            if step == spike_at {
                s.energy = 1e6;
                s.phases
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, p)| *p = i as f64 * 2.0);
            }
            publisher.publish(&s).await.expect("accepted");
        }
    });
    for sub in [&mut sub, &mut json_sub] {
        let (mut frames, mut states, mut seen_spike) = (0u64, 0u64, false);
        read_until(sub, last, |_, _, sub| {
            frames += 1;
            let envelope = sub.envelope().expect("an envelope on every frame");
            let summary = sub.summary().unwrap();
            states += u64::from(envelope.states);
            assert!(envelope.energy.min <= summary.energy && summary.energy <= envelope.energy.max);
            if envelope.energy.max == 1e6 {
                seen_spike = true;
                assert!(
                    envelope.r.min < 0.9 * envelope.r.max,
                    "the desynchronised step is in r's range too"
                );
            }
        })
        .await;
        assert!(seen_spike, "the spike is in an envelope");
        // Both were counted as subscribers before the first state: every state is in
        // exactly one envelope, even one published before the first frame (which,
        // on a loaded machine, may carry two states when the first two come together).
        assert_eq!(
            states, last,
            "every state since the subscriber joined, once"
        );
        // Fewer frames than states at 10 Hz, unless each publish took 100 ms.
        assert!(
            frames < states,
            "{frames} frames for {states} states: decimated"
        );
    }
    producer.await.unwrap();
    server.shutdown().await;
}

/// A subscriber of the 10⁻³ class that reconnects with the seq and epoch it holds
/// resumes with a delta of its class and keeps verifying; a bad `epsilon` or
/// `fields` is refused naming the parameter.
#[tokio::test]
async fn resume_works_within_a_class_and_bad_parameters_are_named() {
    let server = TestServer::start().await;
    let publisher = server.publisher(Encoding::Json);
    let options = SubscribeOptions::new(server.ws())
        .encoding(Encoding::Protobuf)
        .epsilon(1e-3);
    let mut sub = connect(options.clone()).await;
    for step in 1..=20 {
        publisher.publish(&creeping(step, 64, 4e-4)).await.unwrap();
    }
    read_until(&mut sub, 20, |_, _, _| {}).await;
    let (seq, epoch, held) = (
        sub.seq().unwrap(),
        sub.epoch().unwrap().to_owned(),
        sub.state().unwrap().clone(),
    );
    drop(sub);
    for step in 21..=30 {
        publisher.publish(&creeping(step, 64, 4e-4)).await.unwrap();
    }
    let resumed = options.resume(epoch, seq);
    let mut sub = within("resume", Subscriber::connect_holding(&resumed, held))
        .await
        .unwrap();
    let r = within("first frame", sub.next_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.seq, r.kind, r.base_seq),
        (30, FrameKind::Delta, Some(20))
    );
    let truth = creeping(30, 64, 4e-4);
    for (h, w) in sub.state().unwrap().phases.iter().zip(&truth.phases) {
        assert!((h - w).abs() <= 1e-3);
    }
    assert_eq!(sub.resyncs(), 0);

    for (param, value) in [
        ("epsilon", "0.5"),
        ("fields", "phases,colour"),
        ("fields", ""),
    ] {
        let url = format!("{}/ws?{param}={value}", server.ws());
        match Subscriber::connect(&SubscribeOptions::new(url)).await {
            Err(ClientError::Refused {
                status: 400,
                field,
                error,
                ..
            }) => {
                assert_eq!(field.as_deref(), Some(param), "{error}");
            }
            other => panic!("{param}={value}: {other:?}"),
        }
    }
    server.shutdown().await;
}

/// The Python and TypeScript clients, in both formats, at ε = 10⁻³ with
/// `fields=phases,summary` and with `fields=summary`: every line they print holds the
/// projected state (phases within ε, or none; no spins; energy 0) and the server's
/// summary of that seq, equal to one computed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_takes_classes_fields_and_summaries() {
    let Some((python, node)) = crate::conformance::external_clients() else {
        eprintln!("skipping: run scripts/test.sh");
        return;
    };
    let bins = 16;
    // Every seq to every client, however slow its interpreter: nothing is skipped.
    let server = TestServer::with(|c| {
        c.subscriber.outbox_frames = 1024;
        c.subscriber.freshness = None;
    })
    .await;
    let last = 200u64;
    let truth: HashMap<u64, State> = (1..=last).map(|s| (s, creeping(s, 40, 4e-4))).collect();
    let url = format!("{}/ws", server.ws());
    let mut runners = Vec::new();
    for lang in ["python", "node"] {
        for format in ["json", "protobuf"] {
            for fields in ["phases,summary", "summary"] {
                let mut command = match lang {
                    "python" => {
                        let mut c = tokio::process::Command::new(&python);
                        c.args(["-m", "phasecast.conformance"]);
                        c
                    }
                    _ => {
                        let mut c = tokio::process::Command::new("node");
                        c.arg(&node);
                        c
                    }
                };
                command
                    .args(["--url", &url, "--format", format, "--epsilon", "0.001"])
                    .args(["--fields", fields, "--until-seq", &last.to_string()])
                    .args(["--timeout", "60"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true);
                let child = command.spawn().unwrap_or_else(|e| panic!("{lang}: {e}"));
                runners.push((format!("{lang} {format} {fields}"), fields, child));
            }
        }
    }
    let states: Vec<_> = (1..=last).map(|s| truth[&s].clone()).collect();
    publish_all(&server, runners.len(), &states).await;
    for (label, fields, child) in runners {
        let output = within(&label, child.wait_with_output()).await.unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{label}: {}\n{err}", output.status);
        let text = String::from_utf8(output.stdout).unwrap();
        let mut seqs = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (seq, held) = crate::conformance::parse_line(line);
            let want = &truth[&seq];
            let what = format!("{label} seq {seq}");
            assert!(
                held.spins.is_empty() && held.energy == 0.0,
                "{what}: {line}"
            );
            if fields == "summary" {
                assert!(held.phases.is_empty(), "{what}");
            } else {
                assert_eq!(held.phases.len(), want.phases.len(), "{what}");
                for (h, w) in held.phases.iter().zip(&want.phases) {
                    assert!((h - w).abs() <= 1e-3, "{what}: {h} vs {w}");
                }
            }
            let s = &v["summary"];
            let f = |k: &str| {
                s[k].as_f64()
                    .unwrap_or_else(|| panic!("{what}: {k} in {line}")) as f32
            };
            let histogram: Vec<u32> = s["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap() as u32)
                .collect();
            let summary = Summary {
                r: f("r"),
                psi: f("psi"),
                magnetization: f("magnetization"),
                energy: f("energy"),
                histogram,
            };
            assert_summary(&summary, want, bins, &what);
            seqs += 1;
        }
        assert_eq!(seqs, last, "{label}: a line per state");
    }
    server.shutdown().await;
}
