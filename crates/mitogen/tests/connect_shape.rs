//! One shape for every connection method: `Router::connect` with any
//! method's options, a chain written as data (`ConnectionSpec`) that
//! survives serialisation, per-connection settings from `CommonOptions`,
//! and names refused before anything runs.

use mitogen::{
    Bootstrap, ConnectFailure, ConnectionSpec, Context, LocalOptions, MethodOptions, Router,
};

#[mitogen::remote]
fn identity() -> (u32, Vec<u32>) {
    (mitogen::context_id(), mitogen::parent_ids())
}

#[mitogen::remote]
fn max_message_size(router: &Router) -> usize {
    router.max_message_size()
}

fn ids(c: &Context) -> (u32, Vec<u32>) {
    c.call(identity::remote, ()).unwrap()
}

#[test]
fn a_chain_written_as_data_survives_serialisation_and_connects_hop_by_hop() {
    let spec = ConnectionSpec::new()
        .then(LocalOptions::new().remote_name("hop-a"))
        .then(
            LocalOptions::new()
                .bootstrap(Bootstrap::Shell)
                .remote_name("hop-b"),
        )
        .then(LocalOptions::new().remote_name("hop-c"));
    // As data: written and read back, the way a file or another program
    // would hand it over.
    let bytes = postcard::to_allocvec(&spec).unwrap();
    let spec: ConnectionSpec = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(spec.hops.len(), 3);
    Router::with(|router| {
        let leaf = router.connect_spec(&spec).unwrap();
        assert_eq!(leaf.name(), "hop-c");
        let (id, parents) = ids(&leaf);
        assert_eq!(id, leaf.context_id());
        // hop-c's parents: hop-b, hop-a, the master.
        assert_eq!(parents.len(), 3, "{parents:?}");
        assert_eq!(*parents.last().unwrap(), router.context_id());
        let e = router.connect_spec(&ConnectionSpec::new()).unwrap_err();
        assert_eq!(e.connect_failure(), Some(ConnectFailure::InvalidOptions));
    })
    .unwrap();
}

#[test]
fn router_connect_takes_any_methods_options() {
    Router::with(|router| {
        let hop: MethodOptions = LocalOptions::new().remote_name("by-connect").into();
        assert_eq!(hop.method_name(), "local");
        let child = router.connect(hop).unwrap();
        assert_eq!(child.name(), "by-connect");
        let grandchild = router
            .connect(LocalOptions::new().remote_name("below").via(&child))
            .unwrap();
        let (_, parents) = ids(&grandchild);
        assert_eq!(parents[0], child.context_id());
    })
    .unwrap();
}

#[test]
fn common_options_reach_the_child() {
    Router::with(|router| {
        let child = router
            .local(LocalOptions::new().max_message_size(1 << 20))
            .unwrap();
        assert_eq!(child.call(max_message_size::remote, ()).unwrap(), 1 << 20);
        // The default is the router's own.
        let other = router.local(LocalOptions::new()).unwrap();
        assert_eq!(
            other.call(max_message_size::remote, ()).unwrap(),
            router.max_message_size()
        );
    })
    .unwrap();
}

#[test]
fn bad_names_are_refused_before_anything_runs() {
    Router::with(|router| {
        for (name, why) in [
            ("", "is empty"),
            ("a/b", "'/'"),
            ("two\nlines", "control characters"),
        ] {
            let e = router
                .local(LocalOptions::new().remote_name(name))
                .unwrap_err();
            assert_eq!(e.connect_failure(), Some(ConnectFailure::InvalidOptions));
            assert!(e.to_string().contains(why), "{name:?}: {e}");
        }
        // Checked here, before the hop, when made through `via`.
        let relay = router.local(LocalOptions::new()).unwrap();
        let e = router
            .local(LocalOptions::new().remote_name("x/y").via(&relay))
            .unwrap_err();
        assert_eq!(e.connect_failure(), Some(ConnectFailure::InvalidOptions));
    })
    .unwrap();
}
