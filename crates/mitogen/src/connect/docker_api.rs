//! The Docker Engine API on its local socket, for the one question `setns`
//! asks: a container's leader pid. One HTTP/1.0 request, `GET
//! /containers/<name>/json`, on `/var/run/docker.sock`: about a
//! millisecond, where `docker inspect` costs 10–20 ms of CLI start-up.
//!
//! Used only when the `docker` program would talk to that same socket (no
//! `DOCKER_HOST` or `DOCKER_CONTEXT`, the default `docker_path`); anything
//! unexpected (no socket, an answer we cannot read) returns `None` and the
//! caller asks the CLI instead, whose words name the problem.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// The socket the docker CLI uses by default.
const SOCKET: &str = "/var/run/docker.sock";
/// Larger answers are not read (an inspect answer is a few kB).
const LIMIT: u64 = 1 << 20;

/// What the engine said about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inspect {
    /// It runs, with this leader pid.
    Running(u32),
    /// It exists but does not run.
    Stopped,
    /// No such container; the engine's message.
    Missing(String),
}

/// Whether the docker CLI would use [`SOCKET`].
pub(crate) fn usable(docker_path: &str) -> bool {
    docker_path == "docker"
        && std::env::var_os("DOCKER_HOST").is_none()
        && std::env::var_os("DOCKER_CONTEXT").is_none()
}

/// Ask the engine about `container`; `None` when it cannot be asked or
/// its answer is not understood, or for a name docker would not give a
/// container (it is left to the CLI to refuse).
pub(crate) fn inspect(container: &str, deadline: Instant) -> Option<Inspect> {
    if !plain_name(container) {
        return None;
    }
    let left = deadline.checked_duration_since(Instant::now())?;
    let mut s = UnixStream::connect(SOCKET).ok()?;
    s.set_read_timeout(Some(left)).ok()?;
    s.set_write_timeout(Some(left)).ok()?;
    let request = format!("GET /containers/{container}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    s.take(LIMIT).read_to_end(&mut answer).ok()?;
    parse(&answer)
}

/// A container name or id as docker makes them: `[A-Za-z0-9][A-Za-z0-9_.-]*`,
/// safe in a URL path as it is.
fn plain_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Read an HTTP answer to the inspect request.
fn parse(answer: &[u8]) -> Option<Inspect> {
    let text = std::str::from_utf8(answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    match status {
        200 => {}
        404 => {
            let message = json_string(body, "message").unwrap_or_default();
            return Some(Inspect::Missing(message));
        }
        _ => return None,
    }
    // Keys cannot occur inside JSON strings unescaped (a quote there is
    // `\"`), so the first `"State":{` is the container's state and the first
    // `"Pid":` after it is its leader's.
    let state = &body[body.find("\"State\":{")?..];
    let pid = number_after(state, "\"Pid\":")?;
    Some(if pid == 0 {
        Inspect::Stopped
    } else {
        Inspect::Running(u32::try_from(pid).ok()?)
    })
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = text[text.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The value of a top-level string field without escapes, e.g. the
/// engine's `{"message":"No such container: x"}`.
fn json_string(body: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let rest = &body[body.find(&pat)? + pat.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!("HTTP/1.0 {status}\r\nContent-Type: application/json\r\n\r\n{body}").into_bytes()
    }

    #[test]
    fn answers_are_read() {
        let running = r#"{"Id":"4f","Args":["\"State\":{\"Pid\":7}"],"State":{"Status":"running","Running":true,"Pid":4242,"ExitCode":0},"Config":{"Pid":9}}"#;
        assert_eq!(
            parse(&http("200 OK", running)),
            Some(Inspect::Running(4242))
        );
        let stopped = r#"{"State":{"Status":"exited","Running":false,"Pid":0}}"#;
        assert_eq!(parse(&http("200 OK", stopped)), Some(Inspect::Stopped));
        let missing = r#"{"message":"No such container: web"}"#;
        assert_eq!(
            parse(&http("404 Not Found", missing)),
            Some(Inspect::Missing("No such container: web".into()))
        );
        assert_eq!(parse(&http("500 Internal Server Error", "{}")), None);
        assert_eq!(parse(&http("200 OK", r#"{"State":{"Pid":"x"}}"#)), None);
        assert_eq!(parse(b"garbage"), None);
    }

    #[test]
    fn only_plain_names_go_in_a_url() {
        assert!(plain_name("web_1.a-b"));
        for bad in ["", "../x", ".x", "a/b", "a b", "a?b", "a%2f"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }
}
