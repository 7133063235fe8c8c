//! Select over many contexts, streaming through Senders, message size limits.

mod common;

use std::time::Duration;

use common::*;
use mitogen::{Error, LocalOptions, Receiver, Router, Select, StreamError};

#[test]
fn select_all_over_twenty_contexts() {
    Router::with(|router| {
        let children: Vec<_> = (0..20)
            .map(|_| router.local(LocalOptions::default()).unwrap())
            .collect();
        let calls = children
            .iter()
            .map(|c| c.call_async(pid::remote, ()).unwrap());
        let mut pids = Select::all(calls).unwrap();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 20, "one distinct process per context");
    })
    .unwrap();
}

#[test]
fn select_all_reports_a_failure() {
    Router::with(|router| {
        let c = router.local(LocalOptions::default()).unwrap();
        let calls = vec![
            c.call_async(fails::remote, ("sdb".into(),)).unwrap(),
            c.call_async(fails::remote, ("sdc".into(),)).unwrap(),
        ];
        match Select::all(calls) {
            Err(Error::Call(e)) => assert!(e.message.contains("no space left on sdb")),
            other => panic!("expected a CallError, got {other:?}"),
        }
    })
    .unwrap();
}

#[test]
fn ten_thousand_messages_arrive_in_order() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let rx = Receiver::new(&router);
        let done = child
            .call_async(stream_numbers::remote, (rx.to_sender(), 10_000))
            .unwrap();
        let got: Vec<u32> = rx.iter().map(|m| m.unpickle().unwrap()).collect();
        assert_eq!(got.len(), 10_000);
        assert!(
            got.iter().enumerate().all(|(i, v)| i as u32 == *v),
            "out of order"
        );
        assert_eq!(done.get().unwrap(), 10_000);
    })
    .unwrap();
}

#[test]
fn nested_select_and_membership() {
    Router::with(|router| {
        let (a, b, c) = (
            Receiver::new(&router),
            Receiver::new(&router),
            Receiver::new(&router),
        );
        let (ta, tb, tc) = (a.to_sender(), b.to_sender(), c.to_sender());
        let (hb, hc) = (b.handle(), c.handle());
        let mut inner = Select::with_oneshot(false);
        inner.add(b);
        inner.add(c);
        let mut outer = Select::with_oneshot(false);
        outer.add(a);
        outer.add(inner);
        assert!(!outer.is_ready());
        assert!(outer.try_recv().is_err());
        tc.send(&3u8).unwrap();
        let m = outer.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((m.unpickle::<u8>().unwrap(), m.receiver_handle()), (3, hc));
        tb.send(&2u8).unwrap();
        ta.send(&1u8).unwrap();
        let mut got = vec![
            outer.recv().unwrap().unpickle::<u8>().unwrap(),
            outer.recv().unwrap().unpickle::<u8>().unwrap(),
        ];
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert!(matches!(
            outer.recv_timeout(Duration::from_millis(20)),
            Err(mitogen::RecvTimeoutError::Timeout(_))
        ));
        assert_eq!(outer.len(), 2);
        assert!(outer.remove(hb).is_err(), "b belongs to the inner select");
        outer.close();
        assert!(outer.recv().is_err());
    })
    .unwrap();
}

#[test]
fn oversize_message_fails_for_the_sender_and_the_link_stays_up() {
    Router::with(|router| {
        router.set_max_message_size(1 << 20).unwrap();
        let child = router.local(LocalOptions::default()).unwrap();
        match child.call(echo_bytes::remote, (vec![0u8; 2 << 20],)) {
            Err(Error::Stream(StreamError::MessageTooLarge { size, max })) => {
                assert!(size > 2 << 20);
                assert_eq!(max, 1 << 20);
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        assert_eq!(child.call(add::remote, (1, 1)).unwrap(), 2);
        // The child inherited the limit: its oversize result becomes a CallError.
        match child.call(make_bytes::remote, (2 << 20,)) {
            Err(Error::Call(e)) => {
                assert_eq!(e.kind, mitogen::CallErrorKind::BadResult);
                assert!(
                    e.message.contains("exceeds the maximum message size"),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected a CallError, got {:?}", other.map(|v| v.len())),
        }
        assert_eq!(
            child.call(echo_bytes::remote, (vec![1u8; 1000],)).unwrap(),
            1000
        );
    })
    .unwrap();
}

#[test]
fn large_argument_and_result_round_trip() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(
            child
                .call(echo_bytes::remote, (vec![5u8; 8 << 20],))
                .unwrap(),
            8 << 20
        );
        let big = child.call(make_bytes::remote, (8 << 20,)).unwrap();
        assert_eq!(big.len(), 8 << 20);
        assert!(big.iter().all(|b| *b == 7));
    })
    .unwrap();
}

#[test]
fn blobs_cross_both_ways() {
    Router::with(|router| {
        let child = router.local(LocalOptions::default()).unwrap();
        let big = mitogen::Blob::from(vec![1u8; 4 << 20]);
        assert_eq!(child.call(blob_len::remote, (big,)).unwrap(), 4 << 20);
        let back = child.call(make_blob::remote, (3 << 20,)).unwrap();
        assert_eq!(back.len(), 3 << 20);
        assert!(back.iter().all(|b| *b == 3));
        assert_eq!(back.clone().into_vec().len(), 3 << 20);
    })
    .unwrap();
}
