//! A message whose auth_id does not match the stream it arrives on is
//! dropped and logged. Own binary: installs a global log capture.

mod common;
mod logs;

use std::time::Duration;

use common::*;
use mitogen::{Receiver, Router};

#[test]
fn forged_auth_id_is_dropped_and_logged() {
    let errors = logs::capture(tracing::Level::ERROR);
    Router::with(|router| {
        let relay = named(&router, "forged-relay");
        let leaf = via(&router, &relay, "forged-leaf").unwrap();
        let rx = Receiver::new(&router);
        // The leaf claims the master's own authority (id 0).
        leaf.call(forge::remote, (rx.to_sender(), 0)).unwrap();
        // Same path, same order: the honest message arrives, the forged one never did.
        let first: String = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unpickle()
            .unwrap();
        assert_eq!(first, "honest");
        // The relay dropped it (the leaf's stream cannot carry id 0's authority)
        // and logged why; its log reaches us tagged with its name.
        let line = errors
            .get_timeout(Duration::from_secs(10))
            .expect("an error was logged for the forged message");
        assert!(line.contains("bad auth_id 0"), "{line}");
    })
    .unwrap();
}
