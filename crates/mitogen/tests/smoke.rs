use mitogen::{LocalOptions, Router};

#[mitogen::remote]
fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[test]
fn local_call() {
    Router::with(|router| {
        let t = std::time::Instant::now();
        let child = router.local(LocalOptions::default()).unwrap();
        assert_eq!(child.call(add::remote, (2, 3)).unwrap(), 5);
        eprintln!("first call {:?}", t.elapsed());
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            child.call(add::remote, (2, 3)).unwrap();
        }
        eprintln!("rt {:?}", t.elapsed() / 1000);
    })
    .unwrap();
}
