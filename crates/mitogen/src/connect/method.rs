//! One shape for every connection method: the [`Method`] trait each
//! method's options implement, the serialisable [`MethodOptions`] that
//! names any of them, [`Router::connect`], and [`ConnectionSpec`], a chain
//! of hops written as data.
//!
//! Adding a method: a file `connect/<name>.rs` with its options (serde,
//! builders), `impl Method` and its `//!` block (program, argv, prompts,
//! errors), and one line in the `methods!` list of `connect/mod.rs`
//! (`docs/design.md`, "Connection methods", shows an example).

use serde::{Deserialize, Serialize};

use super::options::CommonOptions;
use super::spawn::{self, Launch};
use super::via::connect_via;
use super::MethodOptions;
use crate::context::Context;
use crate::error::Result;
use crate::router::Router;

/// What a connection method supplies; the rest ([`Router::connect`]) is
/// the same for all of them.
pub(crate) trait Method: Into<MethodOptions> {
    /// The method's name: the default context name's prefix, and its name
    /// in errors.
    const NAME: &'static str;

    /// The options every method shares.
    fn common(&self) -> &CommonOptions;

    /// The same, to take `via` out.
    fn common_mut(&mut self) -> &mut CommonOptions;

    /// What the connection reaches (host, user, container), for the
    /// default name `<method>.<target>`.
    fn target(&self) -> Option<String> {
        None
    }

    /// Check and normalise the options before anything runs, here or in a
    /// `via` context (so a mistake fails before the hop).
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }

    /// The program to start, how its stdio is connected, the prompts it
    /// may print and any step between fork and exec.
    fn launch(&self, router: &Router) -> Result<Launch>;

    /// Check the new context before handing it out (after the hello).
    fn confirm(&self, _context: &Context) -> Result<()> {
        Ok(())
    }
}

/// The `common`/`common_mut` pair of a [`Method`] whose options keep
/// their [`CommonOptions`] in a `common` field.
macro_rules! common_field {
    () => {
        fn common(&self) -> &$crate::connect::CommonOptions {
            &self.common
        }

        fn common_mut(&mut self) -> &mut $crate::connect::CommonOptions {
            &mut self.common
        }
    };
}

pub(crate) use common_field;

/// Connect with `m`: through its `via` context if it names one, else here.
pub(crate) fn connect<M: Method>(router: &Router, mut m: M) -> Result<Context> {
    m.common().validate()?;
    m.prepare()?;
    if let Some(via) = m.common_mut().via.take() {
        // The relay starts the context as this router would: debug logs
        // and forwarding level travel with the options.
        let common = m.common_mut();
        common.debug |= router
            .inner
            .debug
            .load(std::sync::atomic::Ordering::Relaxed);
        common.forward_level.get_or_insert(router.forward_level());
        return connect_via(router, &via, m.into());
    }
    let launch = m.launch(router)?;
    let common = spawn::Common::new(M::NAME, m.common(), m.target());
    let context = spawn::connect(router, common, launch)?;
    m.confirm(&context)?;
    Ok(context)
}

/// Declares every method: its module (`connect/<module>.rs`), the
/// re-export of its options, and its arm of [`MethodOptions`] with the
/// dispatch. Invoked once, in `connect/mod.rs`, where adding a method is
/// one line.
macro_rules! methods {
    ($($module:ident: $arm:ident($opts:ident),)+) => {
        $(mod $module;
        pub use $module::$opts;)+

        /// The options of any connection method: what
        /// [`Router::connect`](crate::Router::connect) takes, and one hop of
        /// a [`ConnectionSpec`](crate::ConnectionSpec). Serialisable (serde),
        /// so a connection can be written as data or sent to another
        /// context. Every method's options convert into it with `into()`.
        ///
        /// # Examples
        /// ```
        /// use mitogen::{MethodOptions, SshOptions};
        /// let hop: MethodOptions = SshOptions::new("web1").username("deploy").into();
        /// assert_eq!(hop.method_name(), "ssh");
        /// ```
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[non_exhaustive]
        pub enum MethodOptions {
            $(#[doc = concat!("The `", stringify!($module), "` method: [`", stringify!($opts), "`].")]
            $arm($opts),)+
        }

        $(impl From<$opts> for MethodOptions {
            fn from(o: $opts) -> MethodOptions {
                MethodOptions::$arm(o)
            }
        })+

        impl MethodOptions {
            /// The method's name (`"ssh"`, `"sudo"`, …).
            pub fn method_name(&self) -> &'static str {
                use $crate::connect::method::Method;
                match self {
                    $(MethodOptions::$arm(_) => <$opts as Method>::NAME,)+
                }
            }

            /// The options every method shares.
            pub fn common(&self) -> &CommonOptions {
                use $crate::connect::method::Method;
                match self {
                    $(MethodOptions::$arm(o) => o.common(),)+
                }
            }

            /// The options every method shares, to change them.
            pub fn common_mut(&mut self) -> &mut CommonOptions {
                use $crate::connect::method::Method;
                match self {
                    $(MethodOptions::$arm(o) => o.common_mut(),)+
                }
            }

            /// Connect with these options (see [`Router::connect`](crate::Router::connect)).
            pub(crate) fn connect_with(self, router: &$crate::Router) -> $crate::Result<$crate::Context> {
                match self {
                    $(MethodOptions::$arm(o) => $crate::connect::method::connect(router, o),)+
                }
            }
        }
    };
}

pub(crate) use methods;

impl Router {
    /// Connect with any method, given as its options (Mitogen's
    /// `Router.connect(method_name, **kwargs)`): the same as calling the
    /// method's own function (`router.ssh(opts)` is
    /// `router.connect(opts)`).
    ///
    /// # Errors
    /// Those of the method: see [`Error::connect_failure`](crate::Error::connect_failure)
    /// for their kinds.
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen::{MethodOptions, SshOptions, SudoOptions};
    /// # mitogen::Router::with(|router| {
    /// let hops: Vec<MethodOptions> = vec![SshOptions::new("web1").into()];
    /// let web1 = router.connect(hops[0].clone()).unwrap();
    /// let root = router.connect(SudoOptions::new().via(&web1)).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn connect(&self, options: impl Into<MethodOptions>) -> Result<Context> {
        options.into().connect_with(self)
    }

    /// Connect through every hop of `spec` in turn, each made from the
    /// context the previous one reached; the last context. A hop's own
    /// `via` is ignored: the chain decides.
    ///
    /// # Errors
    /// The first hop's error, if any; earlier hops stay connected (shut
    /// them down with the router, or through [`Context::shutdown`]).
    ///
    /// # Examples
    /// ```no_run
    /// use mitogen::{ConnectionSpec, SshOptions, SudoOptions};
    /// # mitogen::Router::with(|router| {
    /// let spec = ConnectionSpec::new()
    ///     .then(SshOptions::new("bastion"))
    ///     .then(SshOptions::new("web1"))
    ///     .then(SudoOptions::new().username("deploy"));
    /// let deploy_on_web1 = router.connect_spec(&spec).unwrap();
    /// # }).unwrap();
    /// ```
    pub fn connect_spec(&self, spec: &ConnectionSpec) -> Result<Context> {
        let mut reached: Option<Context> = None;
        for hop in &spec.hops {
            let mut hop = hop.clone();
            hop.common_mut().via = reached.take();
            reached = Some(self.connect(hop)?);
        }
        reached.ok_or_else(|| {
            crate::error::StreamError::InvalidOptions("the connection spec has no hops".into())
                .into()
        })
    }
}

/// A chain of connections written as data: `ssh bastion → ssh web1 → sudo
/// → docker ctr`, each hop made from the context the one before reached.
/// Serialisable (serde), to keep in a file or pass to another program;
/// connect with [`Router::connect_spec`].
///
/// # Examples
/// ```
/// use mitogen::{ConnectionSpec, SshOptions, SudoOptions};
/// let spec = ConnectionSpec::new()
///     .then(SshOptions::new("bastion"))
///     .then(SshOptions::new("web1").username("deploy"))
///     .then(SudoOptions::new());
/// let names: Vec<_> = spec.hops.iter().map(|h| h.method_name()).collect();
/// assert_eq!(names, ["ssh", "ssh", "sudo"]);
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectionSpec {
    /// The hops, first to last.
    pub hops: Vec<MethodOptions>,
}

impl ConnectionSpec {
    /// An empty chain.
    pub fn new() -> ConnectionSpec {
        ConnectionSpec::default()
    }

    /// The chain with `hop` added at its end.
    pub fn then(mut self, hop: impl Into<MethodOptions>) -> ConnectionSpec {
        self.hops.push(hop.into());
        self
    }
}

/// Runs in the `via` context: make the connection from there.
#[crate::remote]
pub(crate) fn connect_here(router: &Router, method: MethodOptions) -> super::via::Connected {
    super::via::Connected::from_result(router.connect(method))
}
