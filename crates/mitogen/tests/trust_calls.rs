//! Issue 8, trust boundary: one caller's call chains can't touch another's.
//! Own binary: the chain ids of this process must be predictable (the master
//! and the relay both number their chains from 1), so nothing else here
//! makes chains.

mod common;

use std::sync::Mutex;

use common::*;
use mitogen::{CallChain, CallErrorKind, Error, Router};
use serde::{Deserialize, Serialize};

/// `Ok(2)` as "ok 2", a failure as its kind and message.
fn describe(r: mitogen::Result<i32>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(Error::Call(e)) => format!("{:?}: {}", e.kind, e.message),
        Err(e) => format!("other error: {e}"),
    }
}

fn is_chain_failed(s: &str) -> bool {
    s.starts_with(&format!("{:?}:", CallErrorKind::ChainFailed))
}

/// What the relay does with its own chain into the leaf.
#[derive(Debug, Serialize, Deserialize)]
enum Step {
    /// Pipeline a failing call, then report the chain's next call.
    Poison,
    /// Reset the chain, then report its next call.
    Reset,
    /// Report the chain's next call.
    Call,
}

/// The relay's chain into the leaf, kept across calls.
static RELAY_CHAIN: Mutex<Option<CallChain>> = Mutex::new(None);

/// Runs in the relay: one step of its own chain into `leaf`; the result of
/// the chain's `add(1, 1)` afterwards, described.
#[mitogen::remote]
fn relay_step(router: &Router, leaf: u32, step: Step) -> String {
    let mut slot = RELAY_CHAIN.lock().unwrap();
    let chain = slot.get_or_insert_with(|| router.context_by_id(leaf).call_chain());
    match step {
        Step::Poison => chain
            .call_no_reply(fails::remote, ("relay-disk".into(),))
            .unwrap(),
        Step::Reset => chain.reset().unwrap(),
        Step::Call => {}
    }
    describe(chain.call(add::remote, (1, 1)))
}

#[test]
fn l2_call_chain_ids_do_not_collide() {
    Router::with(|router| {
        let relay = named(&router, "l2-relay");
        // The leaf's parents are the relay and the master: both may call it.
        let leaf = via(&router, &relay, "l2-leaf").unwrap();
        let id = leaf.context_id();
        let step = |step: Step| relay.call(relay_step::remote, (id, step)).unwrap();

        // The master's first chain and the relay's first chain share id 1.
        let mine = leaf.call_chain();
        assert_eq!(describe(mine.call(add::remote, (1, 1))), "ok 2");

        // A failure in the relay's chain poisons only the relay's chain.
        let relay_poisoned = step(Step::Poison);
        assert!(is_chain_failed(&relay_poisoned), "{relay_poisoned}");
        assert!(relay_poisoned.contains("relay-disk"), "{relay_poisoned}");
        assert_eq!(
            describe(mine.call(add::remote, (1, 1))),
            "ok 2",
            "the relay's failure poisoned the master's chain"
        );

        // The master poisons its own chain; the relay's reset doesn't clear it.
        mine.call_no_reply(fails::remote, ("master-disk".into(),))
            .unwrap();
        let poisoned = describe(mine.call(add::remote, (1, 1)));
        assert!(is_chain_failed(&poisoned), "{poisoned}");
        assert!(poisoned.contains("master-disk"), "{poisoned}");
        // The reset and the relay's next call reach the leaf before we go on.
        assert_eq!(step(Step::Reset), "ok 2");
        let still = describe(mine.call(add::remote, (1, 1)));
        assert!(
            is_chain_failed(&still) && still.contains("master-disk"),
            "the relay's reset cleared the master's chain: {still}"
        );

        // Vice versa: the relay poisons its second chain (id 2); the master's
        // reset moves it to its own chain 2, which stays clean, and leaves
        // the relay's chain poisoned.
        let relay_poisoned = step(Step::Poison);
        assert!(is_chain_failed(&relay_poisoned), "{relay_poisoned}");
        mine.reset().unwrap();
        assert_eq!(
            describe(mine.call(add::remote, (1, 1))),
            "ok 2",
            "the master's fresh chain inherited the relay's failure"
        );
        let relay_still = step(Step::Call);
        assert!(
            is_chain_failed(&relay_still) && relay_still.contains("relay-disk"),
            "the master's reset cleared the relay's chain: {relay_still}"
        );

        // The tree keeps working: plain calls from both callers.
        assert_eq!(leaf.call(add::remote, (2, 3)).unwrap(), 5);
        assert_eq!(relay.call(call_other::remote, (id,)).unwrap(), 2);
    })
    .unwrap();
}
