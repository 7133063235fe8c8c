//! Keepalive (issue 9): a host that is partitioned away, with TCP saying
//! nothing, is declared dead after the configured silence, and the calls
//! waiting on it fail with that reason; a healthy idle link stays up.
//!
//! Needs root: the sshd runs in its own network namespace joined to ours by
//! a veth pair, and the test cuts the link by taking the far end down.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use mitogen::{Keepalive, Router};
use mitogen_testkit::fixture::{self, USER_A};
use mitogen_testkit::sshd::{Sshd, SshdOptions};
use mitogen_testkit::{process_gone, wait_for};

/// A network namespace joined to ours by a veth pair; removed on drop.
struct NetNs {
    ns: String,
    near: String,
    far: String,
    addr: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    fn new() -> Result<NetNs, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to create network namespaces".into());
        }
        let id = std::process::id();
        let net = id % 250;
        let n = NetNs {
            ns: format!("mitogen-ka-{id}"),
            near: format!("mgka{}", id % 100_000),
            far: format!("mgkb{}", id % 100_000),
            addr: Ipv4Addr::new(10, 213, net as u8, 2),
        };
        let near_addr = format!("10.213.{net}.1/30");
        let far_addr = format!("10.213.{net}.2/30");
        ip(&["netns", "add", &n.ns])?;
        ip(&[
            "link", "add", &n.near, "type", "veth", "peer", "name", &n.far,
        ])?;
        ip(&["link", "set", &n.far, "netns", &n.ns])?;
        ip(&["addr", "add", &near_addr, "dev", &n.near])?;
        ip(&["link", "set", &n.near, "up"])?;
        n.inside(&["addr", "add", &far_addr, "dev", &n.far])?;
        n.inside(&["link", "set", &n.far, "up"])?;
        n.inside(&["link", "set", "lo", "up"])?;
        Ok(n)
    }

    /// `ip <args>` inside the namespace.
    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Drop every packet: take the far end of the pair down. Neither TCP
    /// end is told anything.
    fn cut(&self) {
        self.inside(&["link", "set", &self.far, "down"]).unwrap();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", &self.near]);
    }
}

#[test]
fn a_partitioned_host_is_declared_dead_by_keepalive() {
    let test = "a_partitioned_host_is_declared_dead_by_keepalive";
    let netns = NetNs::new();
    let ready = Sshd::available()
        .and_then(|()| fixture::available())
        .and_then(|()| netns.as_ref().map(|_| ()).map_err(Clone::clone));
    if !fixture::ready_or_skip(test, ready) {
        return;
    }
    let netns = netns.unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        netns: Some((netns.ns.clone(), netns.addr)),
        ..Default::default()
    })
    .unwrap();
    let keepalive = Keepalive::new(Duration::from_millis(500), 3);
    Router::with(|router| {
        router.set_keepalive(Some(keepalive));
        let o = ssh_options(&sshd, USER_A.name);
        let host = router
            .ssh(o)
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
        assert_eq!(host.call(add::remote, (1, 2)).unwrap(), 3);

        // Idle for twice the allowed silence: heartbeats keep it alive. (The
        // time passing is what is tested here, not a wait for an event.)
        std::thread::sleep(keepalive.silence() * 2);
        assert_eq!(
            host.call(add::remote, (2, 2)).unwrap(),
            4,
            "a healthy idle link survives the keepalive"
        );

        let remote_pid = host.call(pid::remote, ()).unwrap();
        let pending = host.call_async(sleep_ms::remote, (60_000u64,)).unwrap();
        netns.cut();
        let cut = Instant::now();
        // Bounded: without the keepalive nothing would ever end this call.
        let err = pending
            .get_timeout(keepalive.silence() + Duration::from_secs(10))
            .expect_err("a call to a partitioned host cannot succeed");
        let took = cut.elapsed();
        let text = err.to_string();
        assert!(
            !matches!(err, mitogen::Error::Timeout(_)),
            "the partition went unnoticed: {text}"
        );
        println!("failed after {took:?}: {text}");
        assert!(
            text.contains("keepalive"),
            "reason names the keepalive: {text}"
        );
        assert!(text.contains(host.name()), "reason names the host: {text}");
        match &err {
            mitogen::Error::Channel(e) => {
                assert_eq!(
                    e.kind(),
                    Some(&mitogen::LossKind::KeepaliveTimeout),
                    "{text}"
                );
                assert_eq!(e.context(), Some(host.name()), "{text}");
            }
            other => panic!("expected a lost-context error, got {other:?}"),
        }
        assert!(
            took <= keepalive.silence() + Duration::from_secs(1),
            "declared dead after {took:?}, allowed {:?} + 1 s",
            keepalive.silence()
        );
        // The far side inherited the keepalive: the child there hears
        // nothing from us either, and exits instead of lingering.
        wait_for(
            keepalive.silence() + Duration::from_secs(5),
            &format!("the partitioned child {remote_pid} to exit"),
            || process_gone(remote_pid),
        );
        println!("the far child exited {:?} after the cut", cut.elapsed());
    })
    .unwrap();
}

/// The keepalive and flow window this context runs with.
#[mitogen::remote]
fn settings(router: &Router) -> (Option<(u64, u32)>, u64) {
    let k = router
        .keepalive()
        .map(|k| (k.interval.as_millis() as u64, k.misses));
    (k, router.flow_window())
}

#[test]
fn children_inherit_keepalive_and_flow_window() {
    Router::with(|router| {
        router.set_keepalive(Some(Keepalive::new(Duration::from_millis(700), 4)));
        router.set_flow_window(3 << 20);
        let child = named(&router, "inherits");
        let grandchild = via(&router, &child, "inherits-too").unwrap();
        for ctx in [&child, &grandchild] {
            assert_eq!(
                ctx.call(settings::remote, ()).unwrap(),
                (Some((700, 4)), 3 << 20),
                "{} runs with its parent's settings",
                ctx.name()
            );
        }
        router.set_keepalive(None);
        let plain = named(&router, "no-keepalive");
        assert_eq!(plain.call(settings::remote, ()).unwrap().0, None);
    })
    .unwrap();
}
