//! The table of functions registered with `#[remote]`, and the helpers the
//! attribute's generated code calls (`mitogen::__private`).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::dispatcher::ExternalContext;
use crate::error::{CallError, CallErrorKind};

pub use linkme;

/// Signature of the generated trampoline: decode arguments, run, encode the result into `out`.
pub type InvokeFn = fn(&ExternalContext, &[u8], &mut Vec<u8>) -> Result<(), Failure>;

/// One registered function.
pub struct RemoteEntry {
    /// `<module path>::<function>`.
    pub name: &'static str,
    /// The signature as written, e.g. `fn(i32, i32) -> i32`.
    pub signature: &'static str,
    /// `file:line` of the function's definition.
    pub location: &'static str,
    /// The trampoline.
    pub invoke: InvokeFn,
}

/// Every function registered in this binary.
#[linkme::distributed_slice]
pub static REMOTE_FUNCTIONS: [RemoteEntry];

/// A failure raised by generated code, carried back as a [`CallError`].
#[derive(Debug)]
pub struct Failure(pub(crate) Box<CallError>);

fn failure(kind: CallErrorKind, name: &str, type_name: &str, message: String) -> Failure {
    Failure(Box::new(CallError::new(kind, name, type_name, message)))
}

/// Decode a call's argument tuple.
///
/// # Errors
/// A `BadArguments` failure naming the function.
pub fn decode_args<A: DeserializeOwned>(name: &'static str, args: &[u8]) -> Result<A, Failure> {
    mitogen_wire::decode(args).map_err(|e| {
        failure(
            CallErrorKind::BadArguments,
            name,
            std::any::type_name::<A>(),
            e.to_string(),
        )
    })
}

/// Encode a plain return value.
///
/// # Errors
/// A `BadResult` failure when serde cannot encode it.
pub fn encode_return<T: Serialize>(
    name: &'static str,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    mitogen_wire::encode_into(value, out).map_err(|e| {
        failure(
            CallErrorKind::BadResult,
            name,
            std::any::type_name::<T>(),
            e.to_string(),
        )
    })
}

/// Encode the `Ok` of a fallible function, or turn its `Err` into a failure.
///
/// # Errors
/// A `Returned` failure carrying the error's type name and `Display` text.
pub fn encode_result<T: Serialize, E: Display + 'static>(
    name: &'static str,
    value: Result<T, E>,
    out: &mut Vec<u8>,
) -> Result<(), Failure> {
    match value {
        Ok(v) => encode_return(name, &v, out),
        Err(e) => Err(failure(
            CallErrorKind::Returned,
            name,
            std::any::type_name::<E>(),
            e.to_string(),
        )),
    }
}

/// Name → entry, built once.
pub(crate) fn lookup(name: &str) -> Option<&'static RemoteEntry> {
    static TABLE: OnceLock<HashMap<&'static str, &'static RemoteEntry>> = OnceLock::new();
    TABLE
        .get_or_init(|| REMOTE_FUNCTIONS.iter().map(|e| (e.name, e)).collect())
        .get(name)
        .copied()
}

/// Hash of every registered name and signature: two binaries with equal
/// hashes agree on every call's types.
pub(crate) fn table_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut rows: Vec<String> = REMOTE_FUNCTIONS
            .iter()
            .map(|e| format!("{}\t{}\n", e.name, e.signature))
            .collect();
        rows.sort();
        let digest = Sha256::digest(rows.concat().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    })
    .clone()
}
