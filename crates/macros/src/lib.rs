//! The `#[remote]` attribute, re-exported by the library as `mitogen::remote`.
//!
//! Its rules, what it generates and examples are on the attribute's page,
//! [`remote`](macro@remote). Inside, the expansion is:
//!
//! * the function, unchanged;
//! * a module of the same name and visibility holding `NAME`, the typed
//!   `remote` handle, a private trampoline that decodes the argument tuple,
//!   calls the function (supplying the injected `&Router` and
//!   `&ExternalContext`) and encodes its result, and
//! * an entry in the `mitogen::__private::REMOTE_FUNCTIONS` distributed
//!   slice (collected at link time by `linkme`) through which the receiving
//!   context finds the trampoline by name, with the signature that goes into
//!   the function-table hash and the `file:line` reported in errors.
//!
//! Because the generated module refers to the function as `super::name`,
//! the attribute only works on functions declared directly in a module.

extern crate proc_macro;

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Spacing, Span, TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::visit_mut::{self, VisitMut};
use syn::{
    Error, FnArg, GenericArgument, Ident, Item, ItemFn, LitStr, Path, PathArguments, PathSegment,
    ReturnType, Type, TypePath,
};

/// Makes a free function callable from other contexts (Mitogen's
/// `call_function` target), re-exported as `mitogen::remote`.
///
/// The function itself is left as written and can still be called
/// locally. Next to it the attribute generates a module of the same name
/// (functions and modules live in different namespaces) with the
/// function's visibility, holding:
///
/// - `remote`: a typed [`mitogen::Remote<Args, R>`] to pass to
///   [`Context::call`] and its relatives, where `Args` is the tuple of
///   the argument types sent over the wire and `R` the result type;
/// - `NAME`: the name the function is registered under, its full path
///   (`my_crate::ops::add`);
/// - a registration in the binary's table of remote functions, collected
///   at link time: nothing needs to be listed or called at start-up.
///
/// # Rules
/// - **A free function**, declared directly in a module (not in a block,
///   an `impl` or a trait), not `async`, `unsafe`, generic or variadic.
///   In a doctest, write `fn main` yourself, so the function sits at the
///   top level rather than inside the generated `main`.
/// - **Owned arguments** whose types are `Serialize + DeserializeOwned`
///   (`String`, not `&str`; `Vec<T>`, not `&[T]`; your own
///   `#[derive(Serialize, Deserialize)]` types). A [`mitogen::Sender`] or a
///   [`mitogen::Context`] may be passed too. The caller gives them as a
///   tuple: `(a, b)`, `(a,)` for one argument, `()` for none.
/// - **Injected parameters**: a parameter of type `&Router` receives the
///   router of the context the call runs in and `&ExternalContext` that
///   context itself (Mitogen's `takes_router`/`takes_econtext`). They may
///   appear at any position, are not part of `Args`, and must be shared
///   references (`&mut` is refused).
/// - **Return type**: any owned `T: Serialize + DeserializeOwned` (or
///   none, for `()`), or `Result<T, E>` written with both parameters, where
///   `E: Display`. An `Err` is not serialised: the caller gets
///   [`mitogen::Error::Call`] with [`CallErrorKind::Returned`], the short
///   type name of `E` (`io::Error`) and its `Display` text, and `R` is `T`.
///   One-parameter aliases (`io::Result<T>`, `anyhow::Result<T>`) hide the
///   error type and are refused: write `Result<T, anyhow::Error>`.
///
/// Each rule broken is a compile error that says which one.
///
/// # Versions
/// Both ends run the same binary, so they agree on every function. A
/// binary built for another architecture may come from another build: at
/// the handshake each side compares a hash of its function table (every
/// `NAME` with its signature), and a difference fails the connection with
/// [`StreamError::VersionSkew`] naming both builds, before any call. A
/// name the target does not know fails the call with
/// [`CallErrorKind::UnknownFunction`].
///
/// # Panics
/// A panic in the function does not end the context: it is caught and the
/// call fails with [`CallErrorKind::Panicked`], the panic message and the
/// remote backtrace (this needs `panic = "unwind"`, the default). The
/// context serves its next call as usual.
///
/// # Examples
/// Defining functions and looking at their handles runs anywhere:
/// ```
/// use mitogen::{remote, ExternalContext, Remote, Router};
///
/// #[remote]
/// pub fn add(a: i32, b: i32) -> i32 {
///     a + b
/// }
///
/// /// Injected parameters are not part of the arguments sent.
/// #[remote]
/// fn whoami(ec: &ExternalContext, greeting: String, router: &Router) -> String {
///     format!("{greeting} from {} (id {})", ec.name(), router.context_id())
/// }
///
/// #[remote]
/// fn read(path: String) -> Result<Vec<u8>, std::io::Error> {
///     std::fs::read(path)
/// }
///
/// fn main() {
///     assert_eq!(add(2, 3), 5); // still an ordinary function
///     let _: Remote<(i32, i32), i32> = add::remote;
///     let _: Remote<(String,), String> = whoami::remote;
///     let _: Remote<(String,), Vec<u8>> = read::remote; // R is T of Result<T, E>
///     assert!(add::NAME.ends_with("::add"));
/// }
/// ```
///
/// Calling them needs a context (a process is started, hence `no_run`):
/// ```no_run
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job {
///     name: String,
///     steps: u32,
/// }
///
/// #[mitogen::remote]
/// fn run(job: Job) -> Result<u32, String> {
///     if job.steps == 0 {
///         return Err(format!("{}: nothing to do", job.name));
///     }
///     Ok(job.steps * 2)
/// }
///
/// #[mitogen::remote]
/// fn boom() {
///     panic!("boom");
/// }
///
/// fn main() {
///     mitogen::main(|router| {
///         let child = router.local(mitogen::LocalOptions::new())?;
///         let job = Job { name: "build".into(), steps: 3 };
///         assert_eq!(child.call(run::remote, (job,))?, 6);
///
///         let empty = Job { name: "idle".into(), steps: 0 };
///         match child.call(run::remote, (empty,)) {
///             Err(mitogen::Error::Call(e)) => {
///                 assert_eq!(e.kind, mitogen::CallErrorKind::Returned);
///                 assert_eq!(e.type_name, "String");
///                 assert_eq!(e.message, "idle: nothing to do");
///             }
///             other => panic!("expected a CallError, got {:?}", other.map(|_| ())),
///         }
///
///         let err = child.call(boom::remote, ()).unwrap_err();
///         eprintln!("{err}"); // names the function, "boom" and the remote backtrace
///         Ok(())
///     })
/// }
/// ```
///
/// [`mitogen::Remote<Args, R>`]: ../mitogen/struct.Remote.html
/// [`Context::call`]: ../mitogen/struct.Context.html#method.call
/// [`mitogen::Sender`]: ../mitogen/struct.Sender.html
/// [`mitogen::Context`]: ../mitogen/struct.Context.html
/// [`mitogen::Error::Call`]: ../mitogen/enum.Error.html#variant.Call
/// [`CallErrorKind::Returned`]: ../mitogen/enum.CallErrorKind.html#variant.Returned
/// [`CallErrorKind::UnknownFunction`]: ../mitogen/enum.CallErrorKind.html#variant.UnknownFunction
/// [`CallErrorKind::Panicked`]: ../mitogen/enum.CallErrorKind.html#variant.Panicked
/// [`StreamError::VersionSkew`]: ../mitogen/enum.StreamError.html#variant.VersionSkew
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // Keep the function itself so that the only errors reported are
            // ours, not follow-on "cannot find function" ones.
            let err = err.to_compile_error();
            quote!(#item #err).into()
        }
    }
}

const REF_ARG_MSG: &str = "remote function arguments must be owned types \
    (use String instead of &str, Vec<T> instead of &[T]); \
    only &Router and &ExternalContext are injected";

/// Expands `#[remote]` with arguments `attr` applied to `item`.
fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut errors = Errors::default();
    if !attr.is_empty() {
        errors.push(Error::new_spanned(&attr, "#[remote] takes no arguments"));
    }
    let func = match syn::parse2::<Item>(item) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            return Err(errors.with(Error::new_spanned(
                other,
                "#[remote] can only be applied to a free function",
            )))
        }
        Err(err) => return Err(errors.with(err)),
    };
    let remote = RemoteFn::analyse(&func, &mut errors);
    errors.finish()?;
    Ok(remote.generate(&func))
}

/// How the trampoline supplies one parameter of the function.
enum Param {
    /// Decoded from the argument tuple sent by the caller.
    Wire(Box<Type>),
    /// Injected: the receiving context's `&Router`.
    Router,
    /// Injected: the receiving context's `&ExternalContext`.
    Context,
}

/// What the expansion needs to know about the function's signature.
struct RemoteFn {
    params: Vec<Param>,
    /// The handle's result type: the return type, or `T` of `Result<T, E>`.
    ret: Type,
    /// Whether the function returns `Result<T, E>`.
    fallible: bool,
    /// Human-readable signature of the remote-visible part, for diagnostics.
    signature: String,
}

impl RemoteFn {
    /// Checks that `func` can be made remote, recording every problem found in
    /// `errors`.
    fn analyse(func: &ItemFn, errors: &mut Errors) -> Self {
        let sig = &func.sig;
        if let Some(token) = &sig.asyncness {
            errors.push(Error::new_spanned(
                token,
                "remote functions cannot be async",
            ));
        }
        if let Some(token) = &sig.unsafety {
            errors.push(Error::new_spanned(
                token,
                "remote functions cannot be unsafe",
            ));
        }
        if !sig.generics.params.is_empty() {
            errors.push(Error::new_spanned(
                &sig.generics,
                "remote functions cannot be generic: both sides must agree on concrete types",
            ));
        }
        if let Some(clause) = &sig.generics.where_clause {
            errors.push(Error::new_spanned(
                clause,
                "remote functions cannot have a where clause",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(Error::new_spanned(
                variadic,
                "remote functions cannot be variadic",
            ));
        }

        let mut params = Vec::new();
        let mut wire_types = Vec::new();
        for input in &sig.inputs {
            let ty = match input {
                FnArg::Typed(pat_type) => &*pat_type.ty,
                FnArg::Receiver(receiver) => {
                    errors.push(Error::new_spanned(
                        receiver,
                        "#[remote] cannot be applied to methods: \
                         remote functions are free functions without `self`",
                    ));
                    continue;
                }
            };
            match classify_param(ty) {
                Ok(param) => {
                    if let Param::Wire(ty) = &param {
                        wire_types.push(type_to_string(ty));
                    }
                    params.push(param);
                }
                Err(err) => errors.push(err),
            }
        }

        let (ret, fallible) = match &sig.output {
            ReturnType::Default => (syn::parse_quote!(()), false),
            ReturnType::Type(_, ty) => classify_return(ty).unwrap_or_else(|err| {
                errors.push(err);
                (syn::parse_quote!(()), false)
            }),
        };

        let mut signature = format!("fn({})", wire_types.join(", "));
        if let ReturnType::Type(_, ty) = &sig.output {
            signature.push_str(" -> ");
            signature.push_str(&type_to_string(ty));
        }

        RemoteFn {
            params,
            ret,
            fallible,
            signature,
        }
    }

    /// Emits the function followed by its remote module.
    fn generate(mut self, func: &ItemFn) -> TokenStream2 {
        let vis = &func.vis;
        let ident = &func.sig.ident;
        let doc = LitStr::new(
            &format!(
                "Remote handle of [`{ident}`](fn@{ident}): pass `{ident}::remote` to `Context::call`."
            ),
            Span::call_site(),
        );
        // A `#[cfg]` that removes the function must remove its module too.
        let cfgs = func.attrs.iter().filter(|attr| attr.path().is_ident("cfg"));

        // The types are written for the parent module; re-root relative
        // `self::`/`super::` paths for use one module further down.
        let mut wire_types = Vec::new();
        for param in &mut self.params {
            if let Param::Wire(ty) = param {
                ReRoot.visit_type_mut(ty);
                wire_types.push(&**ty);
            }
        }
        ReRoot.visit_type_mut(&mut self.ret);
        let ret = &self.ret;

        let bindings: Vec<Ident> = (0..wire_types.len())
            .map(|i| format_ident!("__arg{}", i))
            .collect();
        let args_type = tuple(&wire_types);
        let args_pat = tuple(&bindings);

        let mut bound = bindings.iter();
        let call_args = self.params.iter().map(|param| match param {
            Param::Wire(_) => {
                let binding = bound.next().expect("one binding per wire parameter");
                quote!(#binding)
            }
            Param::Router => quote!(__ec.router()),
            Param::Context => quote!(__ec),
        });

        let encode = if self.fallible {
            quote!(::mitogen::__private::encode_result(NAME, __ret, __out))
        } else {
            quote!(::mitogen::__private::encode_return(NAME, &__ret, __out))
        };
        let signature = LitStr::new(&self.signature, Span::call_site());
        // `file!()`/`line!()` spanned on the function's name: where it is defined.
        let location = quote::quote_spanned!(ident.span()=> concat!(file!(), ":", line!()));

        quote! {
            #func

            #(#cfgs)*
            #[doc = #doc]
            #vis mod #ident {
                #[allow(unused_imports)]
                use super::*;

                /// Stable name under which the function is registered.
                pub const NAME: &str = module_path!();

                /// Typed handle to pass to `Context::call`.
                #[allow(non_upper_case_globals)]
                pub const remote: ::mitogen::Remote<#args_type, #ret> =
                    ::mitogen::Remote::__new(NAME);

                fn __invoke(
                    __ec: &::mitogen::ExternalContext,
                    __args: &[u8],
                    __out: &mut ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<(), ::mitogen::__private::Failure> {
                    let #args_pat: #args_type = ::mitogen::__private::decode_args(NAME, __args)?;
                    let __ret = super::#ident(#(#call_args),*);
                    #encode
                }

                #[::mitogen::__private::linkme::distributed_slice(::mitogen::__private::REMOTE_FUNCTIONS)]
                #[linkme(crate = ::mitogen::__private::linkme)]
                static __ENTRY: ::mitogen::__private::RemoteEntry = ::mitogen::__private::RemoteEntry {
                    name: NAME,
                    signature: #signature,
                    location: #location,
                    invoke: __invoke,
                };
            }
        }
    }
}

/// Decides how a parameter of type `ty` is supplied.
fn classify_param(ty: &Type) -> syn::Result<Param> {
    match peel(ty) {
        Type::Reference(reference) => {
            let injected = match last_segment(peel(&reference.elem)) {
                Some(seg) if seg.ident == "Router" => Param::Router,
                Some(seg) if seg.ident == "ExternalContext" => Param::Context,
                _ => return Err(Error::new_spanned(ty, REF_ARG_MSG)),
            };
            match &reference.mutability {
                Some(token) => Err(Error::new_spanned(
                    token,
                    "injected &Router and &ExternalContext parameters must be shared references",
                )),
                None => Ok(injected),
            }
        }
        Type::ImplTrait(_) => Err(Error::new_spanned(
            ty,
            "remote function arguments cannot be `impl Trait`: name the concrete type",
        )),
        _ => Ok(Param::Wire(Box::new(ty.clone()))),
    }
}

/// Returns the handle's result type for return type `ty`, and whether the
/// function is fallible.
fn classify_return(ty: &Type) -> syn::Result<(Type, bool)> {
    match peel(ty) {
        Type::Reference(_) => Err(Error::new_spanned(
            ty,
            "remote functions must return an owned type: \
             the caller decodes the result into a value of its own",
        )),
        Type::ImplTrait(_) => Err(Error::new_spanned(
            ty,
            "remote functions cannot return `impl Trait`: name the concrete type",
        )),
        Type::Path(TypePath { qself: None, path }) => {
            let seg = path.segments.last().expect("paths have a segment");
            if seg.ident != "Result" {
                return Ok((ty.clone(), false));
            }
            let ok = match &seg.arguments {
                PathArguments::AngleBracketed(args) if args.args.len() == 2 => {
                    match (&args.args[0], &args.args[1]) {
                        (GenericArgument::Type(ok), GenericArgument::Type(_)) => Some(ok),
                        _ => None,
                    }
                }
                _ => None,
            };
            ok.map(|ok| (ok.clone(), true)).ok_or_else(|| {
                Error::new_spanned(
                    ty,
                    "remote functions returning a Result must use the two-argument form \
                     `Result<T, E>`; aliases such as io::Result<T> or anyhow::Result<T> hide \
                     the error type (write e.g. Result<T, anyhow::Error>)",
                )
            })
        }
        _ => Ok((ty.clone(), false)),
    }
}

/// Strips the parentheses and invisible groups (from `macro_rules!`
/// fragments) around a type.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// The last segment of a plain path type such as `mitogen::Router`.
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(TypePath { qself: None, path }) => path.segments.last(),
        _ => None,
    }
}

/// A tuple of `items`: `()`, `(a,)`, `(a, b)`, ...
fn tuple<T: ToTokens>(items: &[T]) -> TokenStream2 {
    match items {
        [one] => quote!((#one,)),
        _ => quote!((#(#items),*)),
    }
}

/// Rewrites paths relative to the current module (`self::x`, `super::x`) so
/// that they name the same item from inside a child module.
struct ReRoot;

impl VisitMut for ReRoot {
    fn visit_path_mut(&mut self, path: &mut Path) {
        if path.leading_colon.is_none() {
            if let Some(first) = path.segments.first_mut() {
                if first.ident == "self" {
                    first.ident = Ident::new("super", first.ident.span());
                } else if first.ident == "super" {
                    let span = first.ident.span();
                    path.segments.insert(0, Ident::new("super", span).into());
                }
            }
        }
        visit_mut::visit_path_mut(self, path);
    }

    fn visit_type_path_mut(&mut self, ty: &mut TypePath) {
        // In `<T as super::Trait>::Assoc` the qualified self's position
        // counts the path segments belonging to the trait.
        let before = ty.path.segments.len();
        visit_mut::visit_type_path_mut(self, ty);
        if let Some(qself) = &mut ty.qself {
            qself.position += ty.path.segments.len() - before;
        }
    }

    fn visit_expr_path_mut(&mut self, expr: &mut syn::ExprPath) {
        // Same as above, for paths in array lengths.
        let before = expr.path.segments.len();
        visit_mut::visit_expr_path_mut(self, expr);
        if let Some(qself) = &mut expr.qself {
            qself.position += expr.path.segments.len() - before;
        }
    }
}

/// Renders a type the way rustfmt would, e.g. `Vec<(u8, String)>` rather than
/// `Vec < (u8 , String) >`, independently of how the compiler spaces tokens.
fn type_to_string(ty: &Type) -> String {
    let mut printer = Printer::default();
    printer.tokens(ty.to_token_stream());
    printer.out.trim().to_owned()
}

#[derive(Default)]
struct Printer {
    out: String,
    /// Whether the last thing written was an identifier or literal, which
    /// needs a space before a following identifier or literal.
    after_word: bool,
}

impl Printer {
    fn tokens(&mut self, tokens: TokenStream2) {
        let mut iter = tokens.into_iter().peekable();
        while let Some(tree) = iter.next() {
            match tree {
                TokenTree::Ident(ident) => self.word(&ident.to_string()),
                TokenTree::Literal(lit) => self.word(&lit.to_string()),
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::None => ("", ""),
                    };
                    self.out.push_str(open);
                    self.after_word = false;
                    self.tokens(group.stream());
                    self.trim_end();
                    self.out.push_str(close);
                    self.after_word = group.delimiter() == Delimiter::None && self.after_word;
                }
                TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                    // A lifetime: the tick binds to the following identifier.
                    if self.after_word {
                        self.out.push(' ');
                    }
                    self.out.push('\'');
                    self.after_word = false;
                }
                TokenTree::Punct(punct) => {
                    // Gather a multi-character operator such as `->` or `::`.
                    let mut op = punct.as_char().to_string();
                    let mut spacing = punct.spacing();
                    while spacing == Spacing::Joint {
                        match iter.peek() {
                            Some(TokenTree::Punct(next)) if next.as_char() != '\'' => {
                                op.push(next.as_char());
                                spacing = next.spacing();
                                iter.next();
                            }
                            _ => break,
                        }
                    }
                    match op.as_str() {
                        "," | ";" => {
                            self.out.push_str(&op);
                            self.out.push(' ');
                        }
                        "->" | "=" | "+" => {
                            self.trim_end();
                            self.out.push(' ');
                            self.out.push_str(&op);
                            self.out.push(' ');
                        }
                        _ => self.out.push_str(&op),
                    }
                    self.after_word = false;
                }
            }
        }
    }

    fn word(&mut self, word: &str) {
        if self.after_word {
            self.out.push(' ');
        }
        self.out.push_str(word);
        self.after_word = true;
    }

    fn trim_end(&mut self) {
        let len = self.out.trim_end().len();
        self.out.truncate(len);
    }
}

/// Accumulates errors so that all problems are reported at once.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, err: Error) {
        match &mut self.0 {
            Some(first) => first.combine(err),
            None => self.0 = Some(err),
        }
    }

    /// All errors so far, plus `err`.
    fn with(mut self, err: Error) -> Error {
        self.push(err);
        self.0.expect("just pushed")
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests;
