//! L11 (names): a child cannot rename another context by handing the master
//! a `Context` under a name of its choosing. Own binary: a deserialized
//! `Context` belongs to the process's first router, so this test must have
//! the process to itself. (Forwarded log records: `trust_log.rs`.)

mod common;

use common::*;
use mitogen::{Context, Router};

/// Return a handle on context `id` under a name of our choosing.
#[mitogen::remote]
fn evil_context(router: &Router, id: u32, name: String) -> Context {
    Context::new(router, id, Some(&name))
}

#[test]
fn l11_child_cannot_rename_other_contexts() {
    Router::with(|router| {
        let attacker = named(&router, "l11-attacker");
        let victim = named(&router, "l11-victim");
        let handle = attacker
            .call(
                evil_context::remote,
                (victim.context_id(), "evil-name".into()),
            )
            .unwrap();
        assert_eq!(handle.context_id(), victim.context_id());
        assert_eq!(handle.name(), "l11-victim");
        assert_eq!(
            router.context_by_id(victim.context_id()).name(),
            "l11-victim"
        );
        assert_eq!(handle.call(my_id::remote, ()).unwrap(), victim.context_id());
    })
    .unwrap();
}
