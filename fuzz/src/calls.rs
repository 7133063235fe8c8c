//! The `call_body` and `reply_body` targets: the `CALL_FUNCTION` body a
//! child's dispatcher decodes, and the reply body a caller decodes
//! (`mitogen::__fuzz::{call, reply}`, the library's own code paths).
//!
//! The expected outcome is worked out independently with `mitogen-wire`'s
//! codec (the request is `(name, chain)` then the argument tuple; a reply is
//! a tag byte, 0 then the result or 1 then a `CallError`) and compared.

use std::fmt::Debug;
use std::sync::OnceLock;

use mitogen::{
    Blob, CallError, CallErrorKind, ChannelError, Error, ExternalContext, Router, Sender,
};
use mitogen_wire::{decode, decode_prefix, encode, handle, Frame, Header, FLAG_DEAD};
use serde::de::DeserializeOwned;

use crate::{CallPrefix, Nested};

/// Returns its arguments.
#[mitogen::remote]
pub fn echo_pair(a: u32, b: String) -> (u32, String) {
    (a, b)
}

/// Returns its argument.
#[mitogen::remote]
pub fn echo_nested(n: Nested) -> Nested {
    n
}

/// Returns the bytes of a blob decoded as a view into the call's frame.
#[mitogen::remote]
pub fn echo_blob(b: Blob) -> Vec<u8> {
    b.into_vec()
}

/// Returns where a sender decoded from the call points.
#[mitogen::remote]
pub fn sender_address(s: Sender) -> (u32, u32) {
    (s.context().context_id(), s.dst_handle())
}

/// Fails with `text` when asked to, else returns it with the context id.
#[mitogen::remote]
pub fn fail_if(ec: &ExternalContext, fail: bool, text: String) -> Result<(u32, String), String> {
    if fail {
        Err(text)
    } else {
        Ok((ec.context_id(), text))
    }
}

/// The functions above, by registered name, in the order of
/// [`CallRun::ok`]'s bits.
pub const CALLABLE: [&str; 5] = [
    echo_pair::NAME,
    echo_nested::NAME,
    echo_blob::NAME,
    sender_address::NAME,
    fail_if::NAME,
];

/// One master router for the whole process, made on first use: the
/// dispatcher runs calls with it, and `Sender`s decode through it.
fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| Router::new().expect("starting a router"))
}

/// A frame of `body` with the given addressing.
fn frame(body: &[u8], flags: u8, caller: u32, reply_to: u32) -> Frame {
    Frame {
        header: Header {
            flags,
            src_id: caller,
            auth_id: caller,
            handle: handle::CALL_FUNCTION,
            reply_to,
            length: body.len() as u32,
            ..Header::default()
        },
        body: body.to_vec(),
    }
}

/// A remote failure's `CallError`, or a panic naming what came instead.
fn call_error<T: Debug>(got: mitogen::Result<T>) -> CallError {
    match got {
        Err(Error::Call(e)) => *e,
        other => panic!("expected a remote failure, got {other:?}"),
    }
}

/// What one `call_body` run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallRun {
    /// Bit `i`: function `CALLABLE[i]` ran and its result read back.
    pub ok: u32,
    /// The remote failure's kind, when the call failed.
    pub failed: Option<CallErrorKind>,
}

/// Check the reply to a call of `name`, whose arguments `A` the function
/// turns into `R` with `expect` (`Err` for a `Returned` failure).
fn check_call<A, R>(
    reply: Frame,
    name: &str,
    args: &[u8],
    expect: impl FnOnce(A) -> Result<R, String>,
) -> Result<(), CallErrorKind>
where
    A: DeserializeOwned,
    R: DeserializeOwned + PartialEq + Debug,
{
    let got = mitogen::__fuzz::reply::<R>(reply, name, "fuzz");
    let Ok(a) = decode::<A>(args) else {
        let e = call_error(got);
        assert_eq!(e.kind, CallErrorKind::BadArguments, "{e}");
        return Err(e.kind);
    };
    match expect(a) {
        Ok(want) => assert_eq!(got.expect("the call succeeds"), want),
        Err(text) => {
            let e = call_error(got);
            assert_eq!((e.kind, &e.message), (CallErrorKind::Returned, &text));
            return Err(e.kind);
        }
    }
    Ok(())
}

/// Serve `data[1..]` as a `CALL_FUNCTION` body through the dispatcher;
/// `data[0]` picks whether a reply is asked for (bit 0 clear) and the
/// caller's id (bits 1-2), which keys its call chains.
///
/// Checks: no panic; a reply exactly when one is asked for, tagged 0 or 1;
/// a request that does not decode fails as `BadArguments`; an unknown name
/// as `UnknownFunction`; a known function with arguments that decode
/// returns what it should (its result read back with the reply decoder),
/// with arguments that do not as `BadArguments`; `ChainFailed` only in a
/// chain; every failure names the function and the context.
pub fn call_body(data: &[u8]) -> CallRun {
    let (control, body) = data.split_first().map_or((0, data), |(c, b)| (*c, b));
    let reply_to = if control & 1 == 0 { 1000 } else { 0 };
    let caller = u32::from(control >> 1 & 3);
    let reply = mitogen::__fuzz::call(router(), frame(body, 0, caller, reply_to));
    let mut run = CallRun::default();
    if reply_to == 0 {
        assert!(reply.is_none(), "a reply nobody asked for");
        return run;
    }
    let reply = reply.expect("a reply when asked");
    assert!(matches!(reply.first(), Some(0 | 1)), "reply tag {reply:?}");
    let as_frame = |reply: &[u8]| frame(reply, 0, 0, 0);

    let Ok(((name, chain), args)) = decode_prefix::<CallPrefix>(body) else {
        let e = call_error(mitogen::__fuzz::reply::<()>(
            as_frame(&reply),
            "fuzz::f",
            "fuzz",
        ));
        assert_eq!(e.kind, CallErrorKind::BadArguments, "{e}");
        assert_eq!(
            (e.function.as_str(), e.context.as_str()),
            ("fuzz::f", "fuzz")
        );
        run.failed = Some(e.kind);
        return run;
    };
    if reply[0] == 1 {
        let e = call_error(mitogen::__fuzz::reply::<()>(
            as_frame(&reply),
            &name,
            "fuzz",
        ));
        assert_eq!(
            (e.function.as_str(), e.context.as_str()),
            (name.as_str(), "fuzz")
        );
        if e.kind == CallErrorKind::ChainFailed {
            assert!(chain.is_some(), "ChainFailed outside a chain: {e}");
            run.failed = Some(e.kind);
            return run;
        }
    }
    let Some(i) = CALLABLE.iter().position(|&n| n == name) else {
        if !name.starts_with("mitogen::") {
            let e = call_error(mitogen::__fuzz::reply::<()>(
                as_frame(&reply),
                &name,
                "fuzz",
            ));
            assert_eq!(e.kind, CallErrorKind::UnknownFunction, "{e}");
            run.failed = Some(e.kind);
        }
        return run;
    };
    let reply = as_frame(&reply);
    let outcome = match i {
        0 => check_call(reply, &name, args, |a: (u32, String)| Ok(a)),
        1 => check_call(reply, &name, args, |(n,): (Nested,)| Ok(n)),
        2 => check_call(reply, &name, args, |(b,): (Vec<u8>,)| Ok(b)),
        3 => check_call(reply, &name, args, |(s,): ((u32, u32),)| Ok(s)),
        _ => check_call(reply, &name, args, |(fail, text): (bool, String)| {
            if fail {
                Err(text)
            } else {
                Ok((0u32, text))
            }
        }),
    };
    match outcome {
        Ok(()) => run.ok |= 1 << i,
        Err(kind) => run.failed = Some(kind),
    }
    run
}

/// Bits of [`reply_body`]'s result: which result types decoded, then what
/// else happened.
pub const REPLY_TYPES: u32 = 7;
/// [`reply_body`] bit: the reply was a remote failure.
pub const REPLY_FAILED: u32 = 1 << REPLY_TYPES;
/// [`reply_body`] bit: the frame was dead.
pub const REPLY_DEAD: u32 = 1 << (REPLY_TYPES + 1);

/// Decode `body` as a reply whose result is `T` and compare with the codec:
/// `key` turns a result into something comparable. Returns whether a `T`
/// came back.
fn check_reply<T, K>(body: &[u8], dead: bool, key: fn(T) -> K) -> bool
where
    T: DeserializeOwned + serde::Serialize + Debug,
    K: PartialEq + Debug,
{
    let flags = if dead { FLAG_DEAD } else { 0 };
    let got = mitogen::__fuzz::reply::<T>(frame(body, flags, 0, 0), "fuzz::f", "fuzz");
    if dead {
        match got {
            Err(Error::Channel(ChannelError::Dead(loss))) => {
                assert_eq!(loss.text, String::from_utf8_lossy(body))
            }
            _ => panic!("a dead frame read as something else"),
        }
        return false;
    }
    match body.split_first() {
        Some((0, rest)) => match decode::<T>(rest) {
            Ok(want) => {
                let value = got.expect("a result that decodes");
                let mut again = vec![0];
                again.extend(encode(&value).expect("a decoded value encodes"));
                let back = mitogen::__fuzz::reply::<T>(frame(&again, 0, 0, 0), "fuzz::f", "fuzz");
                let back = key(back.expect("an encoded result decodes"));
                assert_eq!(back, key(value), "result changed across encode/decode");
                assert_eq!(back, key(want), "reply decoder and codec disagree");
                true
            }
            Err(_) => {
                assert!(matches!(got, Err(Error::Codec(_))), "bad result");
                false
            }
        },
        Some((1, rest)) => {
            match decode::<CallError>(rest) {
                Ok(mut want) => {
                    for (field, fill) in
                        [(&mut want.function, "fuzz::f"), (&mut want.context, "fuzz")]
                    {
                        if field.is_empty() {
                            *field = fill.to_string();
                        }
                    }
                    assert_eq!(call_error(got), want);
                }
                Err(_) => assert!(matches!(got, Err(Error::Codec(_))), "bad error"),
            }
            false
        }
        _ => {
            match got {
                Err(Error::Codec(e)) => assert!(e.to_string().contains("no valid tag"), "{e}"),
                _ => panic!("an untagged reply read as something else"),
            }
            false
        }
    }
}

/// Decode `data[1..]` as a call's reply body, as each of a few result
/// types; `data[0]` bit 0 marks the frame dead.
///
/// Checks: no panic; a dead frame gives its reason; tag 0 gives exactly
/// what the codec decodes (and a decoded result survives encode → decode),
/// else a codec error; tag 1 gives the encoded `CallError` with the
/// function and context filled in when empty; any other tag is refused.
/// Returns a bit set: the types that decoded, [`REPLY_FAILED`], [`REPLY_DEAD`].
pub fn reply_body(data: &[u8]) -> u32 {
    let (control, body) = data.split_first().map_or((0, data), |(c, b)| (*c, b));
    let dead = control & 1 == 1;
    let results = [
        check_reply::<u32, _>(body, dead, |v| v),
        check_reply::<String, _>(body, dead, |v| v),
        check_reply::<Vec<u8>, _>(body, dead, |v| v),
        check_reply::<Blob, _>(body, dead, Blob::into_vec),
        check_reply::<Nested, _>(body, dead, |v| v),
        check_reply::<Option<Vec<String>>, _>(body, dead, |v| v),
        check_reply::<(), _>(body, dead, |v| v),
    ];
    let mut bits = results
        .iter()
        .enumerate()
        .fold(0, |acc, (i, ok)| acc | (u32::from(*ok) << i));
    if dead {
        bits |= REPLY_DEAD;
    } else if body.first() == Some(&1) {
        bits |= REPLY_FAILED;
    }
    bits
}
