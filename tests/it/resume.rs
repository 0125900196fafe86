//! Reconnecting subscribers resume with a delta from the state they hold.

use futures_util::StreamExt;
use phasecast::{
    codec::FrameKind,
    codec::{self, Encoding, Frame},
    delta,
};
use phasecast_client::{SubscribeOptions, Subscriber, Subscription};

use crate::support::{metric, state, within, Proxy, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_gets_a_delta_from_the_held_seq_or_a_full_frame_when_it_is_gone() {
    for encoding in Encoding::ALL {
        let server = TestServer::with(|c| c.stream.history = 50).await;
        let publisher = server.publisher(Encoding::Protobuf);
        let held = state(1, 32);
        publisher.publish(&held).await.unwrap();
        let mut sub = server.subscribe(encoding, true).await;
        let r = within("first", sub.next_frame()).await.unwrap().unwrap();
        assert_eq!(r.seq, 1);
        let epoch = sub
            .epoch()
            .expect("a full frame names the epoch")
            .to_owned();
        sub.close().await.unwrap();

        // Twenty states go by while it is away, each moving a few phases.
        let mut newest = held.clone();
        for step in 2..=21 {
            newest.step = step;
            newest.phases[step as usize % 6] += 0.25;
            newest.energy -= 1.0;
            publisher.publish(&newest).await.unwrap();
        }
        let options = SubscribeOptions::new(server.ws())
            .encoding(encoding)
            .resume(epoch, 1);
        // A raw socket: what the server sends first, before any client logic.
        let (mut resumed, _) = tokio_tungstenite::connect_async(options.ws_url())
            .await
            .unwrap();
        let message = within("resume frame", resumed.next())
            .await
            .unwrap()
            .unwrap();
        match codec::decode_frame(encoding, &message.into_data()).unwrap() {
            Frame::Delta(d) => {
                assert_eq!((d.base_seq, d.seq), (1, 21));
                let mut view = held.clone();
                delta::apply(&mut view, &d).unwrap();
                assert_eq!(view, newest);
            }
            other => panic!("expected a delta, got {other:?}"),
        }

        // Seq 1 falls out of the 50-state history: resuming from it gets a full frame.
        for step in 22..=80 {
            publisher.publish(&state(step, 32)).await.unwrap();
        }
        let mut stale = Subscriber::connect(&options).await.unwrap();
        let r = within("full after a miss", stale.next_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.kind, r.seq), (FrameKind::Full, 80));
        assert_eq!(stale.state().unwrap(), &state(80, 32));

        let scrape = server.metrics().await;
        assert_eq!(
            metric(&scrape, "phasecast_resumes_total{result=\"hit\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(&scrape, "phasecast_resumes_total{result=\"miss\"}"),
            Some(1.0)
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_reconnects_after_a_cut_and_resumes_exactly() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr()).await;
    let publisher = server.publisher(Encoding::Json);
    publisher.publish(&state(1, 16)).await.unwrap();
    let options =
        SubscribeOptions::new(format!("ws://{}", proxy.addr())).encoding(Encoding::Protobuf);
    let mut subscription = Subscription::new(options);
    let (seq, _) = within("first", subscription.next_state()).await.unwrap();
    assert_eq!(seq, 1);

    proxy.cut();
    for step in 2..=30 {
        publisher.publish(&state(step, 16)).await.unwrap();
    }
    // Whatever it reads next, it ends at the newest state, exactly, without a gap.
    let mut last = 1;
    while last < 30 {
        let (seq, s) = within("after the cut", subscription.next_state())
            .await
            .unwrap();
        assert!(seq > last, "seqs only move forward");
        assert_eq!(s, state(seq, 16));
        last = seq;
    }
    assert!(
        subscription.stats().reconnects >= 1,
        "the cut forced a reconnect"
    );
    let scrape = server.metrics().await;
    assert_eq!(
        metric(&scrape, "phasecast_resumes_total{result=\"hit\"}"),
        Some(1.0)
    );
    server.shutdown().await;
}
