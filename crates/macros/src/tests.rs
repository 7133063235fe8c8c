//! Tests of the expansion, compared as token strings.

use super::*;

/// Expands `item` (with no attribute arguments), which must succeed.
fn expand_ok(item: TokenStream2) -> String {
    expand(TokenStream2::new(), item)
        .unwrap_or_else(|err| panic!("expansion failed: {err}"))
        .to_string()
}

/// Expands `item` with attribute arguments `attr`, which must fail, and
/// returns the error messages.
fn expand_err(attr: TokenStream2, item: TokenStream2) -> Vec<String> {
    match expand(attr, item) {
        Ok(tokens) => panic!("expansion unexpectedly succeeded: {tokens}"),
        Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// The parts of the generated module that vary between the tests below.
struct Expected {
    func: TokenStream2,
    vis: TokenStream2,
    name: &'static str,
    args_type: TokenStream2,
    args_pat: TokenStream2,
    ret: TokenStream2,
    call_args: TokenStream2,
    encode: TokenStream2,
    signature: &'static str,
}

impl Expected {
    fn render(self) -> String {
        let Expected {
            func,
            vis,
            name,
            args_type,
            args_pat,
            ret,
            call_args,
            encode,
            signature,
        } = self;
        let ident = Ident::new(name, Span::call_site());
        let doc = format!(
            "Remote handle of [`{name}`](fn@{name}): pass `{name}::remote` to `Context::call`."
        );
        quote! {
            #func

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
                    let __ret = super::#ident(#call_args);
                    #encode
                }

                #[::mitogen::__private::linkme::distributed_slice(::mitogen::__private::REMOTE_FUNCTIONS)]
                #[linkme(crate = ::mitogen::__private::linkme)]
                static __ENTRY: ::mitogen::__private::RemoteEntry = ::mitogen::__private::RemoteEntry {
                    name: NAME,
                    signature: #signature,
                    location: concat!(file!(), ":", line!()),
                    invoke: __invoke,
                };
            }
        }
        .to_string()
    }
}

fn encode_return() -> TokenStream2 {
    quote!(::mitogen::__private::encode_return(NAME, &__ret, __out))
}

fn encode_result() -> TokenStream2 {
    quote!(::mitogen::__private::encode_result(NAME, __ret, __out))
}

#[test]
fn plain_function() {
    let func = quote! {
        /// Adds two numbers.
        #[inline]
        pub fn add(a: i32, b: i32) -> i32 { a + b }
    };
    // Spelled out in full once; the other tests use `Expected`.
    let expected = quote! {
        /// Adds two numbers.
        #[inline]
        pub fn add(a: i32, b: i32) -> i32 { a + b }

        #[doc = "Remote handle of [`add`](fn@add): pass `add::remote` to `Context::call`."]
        pub mod add {
            #[allow(unused_imports)]
            use super::*;

            /// Stable name under which the function is registered.
            pub const NAME: &str = module_path!();

            /// Typed handle to pass to `Context::call`.
            #[allow(non_upper_case_globals)]
            pub const remote: ::mitogen::Remote<(i32, i32), i32> = ::mitogen::Remote::__new(NAME);

            fn __invoke(
                __ec: &::mitogen::ExternalContext,
                __args: &[u8],
                __out: &mut ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), ::mitogen::__private::Failure> {
                let (__arg0, __arg1): (i32, i32) = ::mitogen::__private::decode_args(NAME, __args)?;
                let __ret = super::add(__arg0, __arg1);
                ::mitogen::__private::encode_return(NAME, &__ret, __out)
            }

            #[::mitogen::__private::linkme::distributed_slice(::mitogen::__private::REMOTE_FUNCTIONS)]
            #[linkme(crate = ::mitogen::__private::linkme)]
            static __ENTRY: ::mitogen::__private::RemoteEntry = ::mitogen::__private::RemoteEntry {
                name: NAME,
                signature: "fn(i32, i32) -> i32",
                location: concat!(file!(), ":", line!()),
                invoke: __invoke,
            };
        }
    };
    assert_eq!(expand_ok(func), expected.to_string());
}

#[test]
fn injected_router_and_context() {
    let func = quote! {
        pub(crate) fn spawn(
            router: &mitogen::Router,
            mut name: String,
            ec: &ExternalContext,
            _: Vec<(u8, bool)>,
        ) {}
    };
    let expected = Expected {
        func: func.clone(),
        vis: quote!(pub(crate)),
        name: "spawn",
        args_type: quote!((String, Vec<(u8, bool)>)),
        args_pat: quote!((__arg0, __arg1)),
        ret: quote!(()),
        call_args: quote!(__ec.router(), __arg0, __ec, __arg1),
        encode: encode_return(),
        signature: "fn(String, Vec<(u8, bool)>)",
    };
    assert_eq!(expand_ok(func), expected.render());
}

#[test]
fn zero_arguments_private() {
    let func = quote! {
        fn ping() {}
    };
    let expected = Expected {
        func: func.clone(),
        vis: quote!(),
        name: "ping",
        args_type: quote!(()),
        args_pat: quote!(()),
        ret: quote!(()),
        call_args: quote!(),
        encode: encode_return(),
        signature: "fn()",
    };
    assert_eq!(expand_ok(func), expected.render());
}

#[test]
fn only_injected_arguments() {
    let func = quote! {
        pub fn hostname(router: &Router) -> String { todo!() }
    };
    let expected = Expected {
        func: func.clone(),
        vis: quote!(pub),
        name: "hostname",
        args_type: quote!(()),
        args_pat: quote!(()),
        ret: quote!(String),
        call_args: quote!(__ec.router()),
        encode: encode_return(),
        signature: "fn() -> String",
    };
    assert_eq!(expand_ok(func), expected.render());
}

#[test]
fn one_argument() {
    let func = quote! {
        pub fn len(s: String) -> usize { s.len() }
    };
    let expected = Expected {
        func: func.clone(),
        vis: quote!(pub),
        name: "len",
        args_type: quote!((String,)),
        args_pat: quote!((__arg0,)),
        ret: quote!(usize),
        call_args: quote!(__arg0),
        encode: encode_return(),
        signature: "fn(String) -> usize",
    };
    assert_eq!(expand_ok(func), expected.render());
}

#[test]
fn result_returning() {
    for (ret, ok) in [
        (quote!(Result<Vec<u8>, std::io::Error>), quote!(Vec<u8>)),
        (quote!(::std::result::Result<(), String>), quote!(())),
    ] {
        let func = quote! {
            pub fn read(path: String) -> #ret { todo!() }
        };
        let signature = format!(
            "fn(String) -> {}",
            type_to_string(&syn::parse2(ret).unwrap())
        );
        let expected = Expected {
            func: func.clone(),
            vis: quote!(pub),
            name: "read",
            args_type: quote!((String,)),
            args_pat: quote!((__arg0,)),
            ret: ok,
            call_args: quote!(__arg0),
            encode: encode_result(),
            signature: Box::leak(signature.into_boxed_str()),
        };
        assert_eq!(expand_ok(func), expected.render());
    }
}

#[test]
fn signature_spelling() {
    let func = quote! {
        pub fn f(a: Vec<Vec<u8>>, b: [u8; 4], c: Box<dyn Fn(u8) -> u8 + Send + 'static>)
            -> Result<Option<(i32,)>, Box<dyn std::error::Error>>
        { todo!() }
    };
    let out = expand_ok(func);
    let signature = "fn(Vec<Vec<u8>>, [u8; 4], Box<dyn Fn(u8) -> u8 + Send + 'static>) \
                     -> Result<Option<(i32,)>, Box<dyn std::error::Error>>";
    assert!(out.contains(&format!("signature : {signature:?}")), "{out}");
}

#[test]
fn relative_paths_are_rerooted() {
    let func = quote! {
        pub fn f(a: self::A, b: super::B, c: Vec<super::C>) -> crate::D { todo!() }
    };
    let out = expand_ok(func);
    let handle = quote! {
        ::mitogen::Remote<(super::A, super::super::B, Vec<super::super::C>), crate::D>
    };
    assert!(out.contains(&handle.to_string()), "{out}");
    // The signature shows the types as written.
    assert!(
        out.contains("\"fn(self::A, super::B, Vec<super::C>) -> crate::D\""),
        "{out}"
    );
}

#[test]
fn qualified_path_is_rerooted() {
    let mut ty: Type = syn::parse_quote!(<T as super::Tr>::Assoc);
    ReRoot.visit_type_mut(&mut ty);
    let expected: Type = syn::parse_quote!(<T as super::super::Tr>::Assoc);
    assert_eq!(
        ty.to_token_stream().to_string(),
        expected.to_token_stream().to_string()
    );
}

#[test]
fn cfg_is_copied_to_module() {
    let func = quote! {
        #[cfg(unix)]
        pub fn f() {}
    };
    let out = expand_ok(func);
    let module = quote!(#[cfg(unix)] #[doc = "Remote handle of [`f`](fn@f): pass `f::remote` to `Context::call`."] pub mod f);
    assert!(out.contains(&module.to_string()), "{out}");
}

#[test]
fn rejects_attribute_arguments() {
    let errors = expand_err(
        quote!(name = "x"),
        quote!(
            fn f() {}
        ),
    );
    assert_eq!(errors, ["#[remote] takes no arguments"]);
}

#[test]
fn rejects_non_functions() {
    let errors = expand_err(
        quote!(),
        quote!(
            struct S;
        ),
    );
    assert_eq!(errors, ["#[remote] can only be applied to a free function"]);
}

#[test]
fn rejects_reference_arguments() {
    for ty in [
        quote!(&str),
        quote!(&[u8]),
        quote!(&T),
        quote!(&'static str),
    ] {
        let errors = expand_err(quote!(), quote!(fn f(a: #ty) {}));
        assert_eq!(errors, [REF_ARG_MSG]);
    }
    assert_eq!(
        REF_ARG_MSG,
        "remote function arguments must be owned types (use String instead of &str, \
         Vec<T> instead of &[T]); only &Router and &ExternalContext are injected"
    );
}

#[test]
fn rejects_mutable_injection() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f(r: &mut Router) {}
        ),
    );
    assert_eq!(
        errors,
        ["injected &Router and &ExternalContext parameters must be shared references"]
    );
}

#[test]
fn rejects_impl_trait() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f(a: impl Into<String>) -> impl Clone {}
        ),
    );
    assert_eq!(
        errors,
        [
            "remote function arguments cannot be `impl Trait`: name the concrete type",
            "remote functions cannot return `impl Trait`: name the concrete type",
        ]
    );
}

#[test]
fn rejects_reference_return() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f() -> &'static str {
                ""
            }
        ),
    );
    assert_eq!(
        errors,
        ["remote functions must return an owned type: \
          the caller decodes the result into a value of its own"]
    );
}

#[test]
fn rejects_result_aliases() {
    for ret in [
        quote!(io::Result<()>),
        quote!(anyhow::Result<String>),
        quote!(Result),
    ] {
        let errors = expand_err(quote!(), quote!(fn f() -> #ret { todo!() }));
        assert_eq!(
            errors,
            [
                "remote functions returning a Result must use the two-argument form \
              `Result<T, E>`; aliases such as io::Result<T> or anyhow::Result<T> hide \
              the error type (write e.g. Result<T, anyhow::Error>)"
            ]
        );
    }
}

#[test]
fn rejects_async() {
    let errors = expand_err(
        quote!(),
        quote!(
            async fn f() {}
        ),
    );
    assert_eq!(errors, ["remote functions cannot be async"]);
}

#[test]
fn rejects_unsafe() {
    let errors = expand_err(
        quote!(),
        quote!(
            unsafe fn f() {}
        ),
    );
    assert_eq!(errors, ["remote functions cannot be unsafe"]);
}

#[test]
fn rejects_generics() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f<T>(t: T) {}
        ),
    );
    assert_eq!(
        errors,
        ["remote functions cannot be generic: both sides must agree on concrete types"]
    );
    let errors = expand_err(
        quote!(),
        quote!(
            fn f<'a>() {}
        ),
    );
    assert_eq!(
        errors,
        ["remote functions cannot be generic: both sides must agree on concrete types"]
    );
}

#[test]
fn rejects_where_clause() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f()
            where
                i32: Copy,
            {
            }
        ),
    );
    assert_eq!(errors, ["remote functions cannot have a where clause"]);
}

#[test]
fn rejects_methods() {
    let errors = expand_err(
        quote!(),
        quote!(
            fn f(&self, a: i32) {}
        ),
    );
    assert_eq!(
        errors,
        ["#[remote] cannot be applied to methods: \
          remote functions are free functions without `self`"]
    );
}

#[test]
fn rejects_variadics() {
    let errors = expand_err(
        quote!(),
        quote!(
            unsafe extern "C" fn f(a: i32, ...) {}
        ),
    );
    assert_eq!(
        errors,
        [
            "remote functions cannot be unsafe",
            "remote functions cannot be variadic"
        ]
    );
}

#[test]
fn reports_all_errors_at_once() {
    let errors = expand_err(
        quote!(x),
        quote!(
            async fn f(a: &str, b: &[u8]) {}
        ),
    );
    assert_eq!(
        errors,
        [
            "#[remote] takes no arguments",
            "remote functions cannot be async",
            REF_ARG_MSG,
            REF_ARG_MSG,
        ]
    );
}
