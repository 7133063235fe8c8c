//! What a compromised child can do, as remote functions shared by the
//! trust tests: hand-built messages sent with the public API from inside a
//! child, the way hostile code running there would.
#![allow(dead_code)]

use std::time::Duration;

use mitogen::handle::{ADD_ROUTE, ALLOCATE_ID, FORWARD_LOG};
use mitogen::{ChannelError, Message, Receiver, ReceiverOptions, RecvTimeoutError, Router};
use serde::Serialize;

/// Announce routes for `ids` to our parent, under `name`.
#[mitogen::remote]
pub fn evil_add_route(router: &Router, ids: Vec<u32>, name: String) {
    for id in ids {
        let mut m = Message::pickled(&(id, name.clone()), ADD_ROUTE).unwrap();
        m.dst_id = router.parent_ids()[0];
        router.route(m).unwrap();
    }
}

/// An id from our own block, granted to us by our parent.
#[mitogen::remote]
pub fn own_fresh_id(router: &Router) -> u32 {
    router.allocate_id().unwrap()
}

/// Ask our parent for `n` id blocks at once: `(granted blocks, refusals)`.
#[mitogen::remote]
pub fn evil_allocate_flood(router: &Router, n: u32) -> (Vec<(u32, u32)>, Vec<String>) {
    let parent = router.parent_ids()[0];
    let rx = Receiver::with_options(
        router,
        ReceiverOptions {
            respondent: Some(parent),
            ..Default::default()
        },
    );
    for _ in 0..n {
        let mut m = Message::new(ALLOCATE_ID, Vec::new());
        m.dst_id = parent;
        m.reply_to = rx.handle();
        router.route(m).unwrap();
    }
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..n {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(m) => granted.push(m.unpickle().unwrap()),
            Err(RecvTimeoutError::Channel(ChannelError::Dead(why))) => refused.push(why.text),
            Err(e) => panic!("{e}"),
        }
    }
    (granted, refused)
}

/// The layout of a forwarded log record, written the way any child could.
#[derive(Serialize)]
struct Record {
    level: u8,
    target: String,
    message: String,
    context: String,
}

/// Send the master a log record of our making, claiming to be `claimed`;
/// with `as_id`, sent with `src_id = auth_id = as_id` (an id routed through
/// our stream: our own, or one granted to us).
#[mitogen::remote]
pub fn forge_record(
    router: &Router,
    as_id: Option<u32>,
    level: u8,
    target: String,
    message: String,
    claimed: String,
) {
    let record = Record {
        level,
        target,
        message,
        context: claimed,
    };
    let mut m = Message::pickled(&record, FORWARD_LOG).unwrap();
    m.dst_id = 0;
    match as_id {
        Some(id) => {
            m.src_id = id;
            m.auth_id = id;
            router.__route_unstamped(m);
        }
        None => router.route(m).unwrap(),
    }
}
