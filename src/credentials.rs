//! Channel credentials (insecure, local, TLS, composite) and call
//! credentials (access token, metadata plugin, composite).

use super::boundary::boundary;
use super::callback::UserData;
use super::error::{cstring, rgrpc_error, rgrpc_result, set_error};
use super::handle::{
    bytes_arg, free_arc, str_checked, str_or_error, to_arc, to_boxed, try_mut_or_null, try_ref,
    try_ref_or_null, write_out, Castable,
};
use rgrpc_core::credentials::{
    CallCredentials, ChannelCredentials, MetadataPlugin, PluginResponder, TlsCredentials,
};
use rgrpc_core::{Code, Metadata};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// How a channel secures its connections: insecure, local, or TLS, with
/// optional call credentials applied to every call (composite).
///
/// Reference-counted (`Arc`), immutable, thread-safe. A channel keeps its
/// own reference, so credentials may be freed right after
/// `rgrpc_channel_new`; one credentials object may serve many channels.
///
/// Methods: `rgrpc_channel_credentials_insecure`,
/// `rgrpc_channel_credentials_local`, `rgrpc_channel_credentials_tls`,
/// `rgrpc_channel_credentials_composite`, `rgrpc_channel_credentials_free`.
pub struct rgrpc_channel_credentials {
    _private: [u8; 0],
}

impl Castable for rgrpc_channel_credentials {
    type Rust = ChannelCredentials;
}

/// Per-call authentication: an access token, a metadata plugin, or several
/// of these in order (composite). Added to a channel with
/// `rgrpc_channel_credentials_composite`, or to one call with
/// `rgrpc_call_options_set_credentials`. Sent only on secure channels (TLS
/// or local); on an insecure channel the call ends with UNAUTHENTICATED.
///
/// Reference-counted (`Arc`), immutable, thread-safe; objects that use it
/// keep their own reference.
///
/// Methods: `rgrpc_call_credentials_access_token`,
/// `rgrpc_call_credentials_plugin`, `rgrpc_call_credentials_composite`,
/// `rgrpc_call_credentials_free`.
pub struct rgrpc_call_credentials {
    _private: [u8; 0],
}

impl Castable for rgrpc_call_credentials {
    type Rust = CallCredentials;
}

/// Insecure (plaintext HTTP/2) channel credentials, like grpcio's
/// `insecure_channel`; NULL credentials mean the same. Owned by the caller:
/// `rgrpc_channel_credentials_free`. Never NULL.
#[no_mangle]
pub extern "C" fn rgrpc_channel_credentials_insecure() -> *const rgrpc_channel_credentials {
    boundary(|| to_arc::<rgrpc_channel_credentials>(Arc::new(ChannelCredentials::insecure())))
}

/// Local channel credentials, like grpcio's `local_channel_credentials`:
/// plaintext HTTP/2 to a loopback address, `localhost` or a Unix socket
/// (`rgrpc_channel_new` refuses other targets), on which call credentials
/// are allowed. Owned by the caller: `rgrpc_channel_credentials_free`.
#[no_mangle]
pub extern "C" fn rgrpc_channel_credentials_local() -> *const rgrpc_channel_credentials {
    boundary(|| to_arc::<rgrpc_channel_credentials>(Arc::new(ChannelCredentials::local())))
}

/// TLS channel credentials (rustls; ALPN `h2`; the server's certificate is
/// always verified, there is no way to skip it).
///
/// `root_pem`/`root_pem_len`: trusted root certificates (PEM); NULL/0 for
/// the default: the file named by `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` if
/// set, else the system trust store, else the built-in Mozilla roots.
/// `cert_chain_pem` and `private_key_pem` (both NULL/0 or both set): a
/// client certificate chain and its key (PEM; RSA, ECDSA or Ed25519) for
/// mutual TLS. All inputs are copied.
///
/// The name checked in the certificate is the target's host, or
/// `grpc.ssl_target_name_override`. Handshake failures (bad, expired or
/// untrusted certificate, name mismatch, plaintext server, no h2) end
/// calls with UNAVAILABLE and a message saying which.
///
/// On success writes new credentials to `*creds_out` (owned:
/// `rgrpc_channel_credentials_free`). On failure, `*error_out` (when not
/// NULL) receives an error saying why (owned: `rgrpc_error_free`).
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_ARGUMENT` (bad PEM, key without chain, ...).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn rgrpc_channel_credentials_tls(
    root_pem: *const u8,
    root_pem_len: usize,
    cert_chain_pem: *const u8,
    cert_chain_pem_len: usize,
    private_key_pem: *const u8,
    private_key_pem_len: usize,
    creds_out: *mut *const rgrpc_channel_credentials,
    error_out: *mut *mut rgrpc_error,
) -> rgrpc_result {
    boundary(|| {
        if creds_out.is_null() {
            return set_error(error_out, rgrpc_result::NullParameter, "creds_out is NULL");
        }
        // SAFETY: each pointer is NULL or points to its length of readable bytes.
        let (roots, chain, key) = unsafe {
            (
                bytes_arg(root_pem, root_pem_len),
                bytes_arg(cert_chain_pem, cert_chain_pem_len),
                bytes_arg(private_key_pem, private_key_pem_len),
            )
        };
        let (Some(roots), Some(chain), Some(key)) = (roots, chain, key) else {
            return set_error(
                error_out,
                rgrpc_result::NullParameter,
                "a PEM pointer is NULL but its length is not 0",
            );
        };
        let roots = (!roots.is_empty()).then_some(roots);
        let identity = match (chain.is_empty(), key.is_empty()) {
            (true, true) => None,
            (false, false) => Some((chain, key)),
            _ => {
                return set_error(
                    error_out,
                    rgrpc_result::InvalidArgument,
                    "mutual TLS needs both a certificate chain and a private key",
                )
            }
        };
        match TlsCredentials::new(roots, identity) {
            Ok(tls) => {
                write_out!(
                    creds_out,
                    to_arc::<rgrpc_channel_credentials>(Arc::new(ChannelCredentials::tls(tls)))
                );
                rgrpc_result::Ok
            }
            Err(e) => set_error(error_out, rgrpc_result::InvalidArgument, &e),
        }
    })
}

/// Channel credentials that apply `call_creds` to every call on channels
/// made with them, like grpcio's `composite_channel_credentials`. Both
/// inputs are borrowed (the result keeps its own references).
///
/// Writes new credentials to `*creds_out` (owned:
/// `rgrpc_channel_credentials_free`). Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`.
#[no_mangle]
pub extern "C" fn rgrpc_channel_credentials_composite(
    channel_creds: *const rgrpc_channel_credentials,
    call_creds: *const rgrpc_call_credentials,
    creds_out: *mut *const rgrpc_channel_credentials,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel_credentials, channel_creds);
        let call = try_ref_or_null!(rgrpc_call_credentials, call_creds);
        if creds_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        let c = ch.compose(call.clone());
        write_out!(creds_out, to_arc::<rgrpc_channel_credentials>(Arc::new(c)));
        rgrpc_result::Ok
    })
}

/// Releases the caller's reference. NULL is a no-op; channels made with
/// the credentials keep working.
#[no_mangle]
pub extern "C" fn rgrpc_channel_credentials_free(creds: *const rgrpc_channel_credentials) {
    boundary(|| {
        // SAFETY: creds is NULL or a reference owned by the caller.
        unsafe { free_arc::<rgrpc_channel_credentials>(creds) }
    })
}

/// Access-token call credentials: every call sends
/// `authorization: Bearer <token>`, like grpcio's
/// `access_token_call_credentials`. `token` is copied; it must be printable
/// ASCII without spaces.
///
/// Writes new credentials to `*creds_out` (owned:
/// `rgrpc_call_credentials_free`). On failure, `*error_out` (when not
/// NULL) receives an error saying why (owned: `rgrpc_error_free`).
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_INVALID_UTF8` or `RGRPC_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn rgrpc_call_credentials_access_token(
    token: *const c_char,
    creds_out: *mut *const rgrpc_call_credentials,
    error_out: *mut *mut rgrpc_error,
) -> rgrpc_result {
    boundary(|| {
        let token = match str_checked(token, "token") {
            Ok(t) => t,
            Err((r, text)) => return set_error(error_out, r, &text),
        };
        if creds_out.is_null() {
            return set_error(error_out, rgrpc_result::NullParameter, "creds_out is NULL");
        }
        match CallCredentials::access_token(token) {
            Ok(c) => {
                write_out!(creds_out, to_arc::<rgrpc_call_credentials>(Arc::new(c)));
                rgrpc_result::Ok
            }
            Err(e) => set_error(error_out, rgrpc_result::InvalidArgument, &e),
        }
    })
}

/// A metadata plugin's request for one call's metadata. Add entries with
/// `rgrpc_plugin_request_add_metadata`, then answer exactly once with
/// `rgrpc_plugin_request_complete` or `rgrpc_plugin_request_fail`, which
/// free the request. The answer may come later and from any thread; until
/// it comes the call waits (bounded by its deadline). Box-owned; one
/// thread at a time.
///
/// Methods: `rgrpc_plugin_request_add_metadata`,
/// `rgrpc_plugin_request_last_error`, `rgrpc_plugin_request_complete`,
/// `rgrpc_plugin_request_fail`.
pub struct rgrpc_plugin_request {
    _private: [u8; 0],
}

pub(crate) struct PluginRequest {
    responder: PluginResponder,
    metadata: Metadata,
    last_error: CString,
}

impl Castable for rgrpc_plugin_request {
    type Rust = PluginRequest;
}

/// Asked for metadata once per call, on a library thread that may block:
/// `method` is the call's path (`/package.Service/Method`), `authority` its
/// `:authority`; both borrowed for the duration of the callback. The
/// callback owns `request` and must answer it (now or later, from any
/// thread). It must not unwind.
pub type rgrpc_metadata_plugin_cb = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        method: *const c_char,
        authority: *const c_char,
        request: *mut rgrpc_plugin_request,
    ),
>;

/// Called once with `user_data` when the last reference to plugin
/// credentials is released, to free what `user_data` points to.
pub type rgrpc_destroy_cb = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

struct CPlugin {
    cb: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut rgrpc_plugin_request),
    user_data: UserData,
    destroy: rgrpc_destroy_cb,
}

impl MetadataPlugin for CPlugin {
    fn get_metadata(&self, method: &str, authority: &str, responder: PluginResponder) {
        let m = cstring(method);
        let a = cstring(authority);
        let req = to_boxed::<rgrpc_plugin_request>(PluginRequest {
            responder,
            metadata: Metadata::new(),
            last_error: CString::default(),
        });
        // SAFETY: the caller's callback, with strings valid for the call and
        // a request it now owns.
        unsafe { (self.cb)(self.user_data.0, m.as_ptr(), a.as_ptr(), req) }
    }
}

impl Drop for CPlugin {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: the caller's destroy callback, called once.
            unsafe { d(self.user_data.0) }
        }
    }
}

/// Metadata-plugin call credentials, like grpcio's
/// `metadata_call_credentials`: `cb` is asked for metadata on every call
/// (see `rgrpc_metadata_plugin_cb`); it may answer later from another
/// thread, and may fail the call. `destroy` (may be NULL) runs when the
/// credentials are no longer used by anything.
///
/// Writes new credentials to `*creds_out` (owned:
/// `rgrpc_call_credentials_free`). Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER` (cb or creds_out NULL).
#[no_mangle]
pub extern "C" fn rgrpc_call_credentials_plugin(
    cb: rgrpc_metadata_plugin_cb,
    user_data: *mut c_void,
    destroy: rgrpc_destroy_cb,
    creds_out: *mut *const rgrpc_call_credentials,
) -> rgrpc_result {
    boundary(|| {
        let (Some(cb), false) = (cb, creds_out.is_null()) else {
            return rgrpc_result::NullParameter;
        };
        let p = CPlugin {
            cb,
            user_data: UserData(user_data),
            destroy,
        };
        let c = CallCredentials::Plugin(Arc::new(p));
        write_out!(creds_out, to_arc::<rgrpc_call_credentials>(Arc::new(c)));
        rgrpc_result::Ok
    })
}

/// Adds an entry to a plugin request (same key and value rules as
/// `rgrpc_call_options_add_metadata`; copied). Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_UTF8` or
/// `RGRPC_RESULT_INVALID_METADATA`; the reason of a failure is
/// `rgrpc_plugin_request_last_error(request)`.
#[no_mangle]
pub extern "C" fn rgrpc_plugin_request_add_metadata(
    request: *mut rgrpc_plugin_request,
    key: *const c_char,
    value: *const u8,
    value_len: usize,
) -> rgrpc_result {
    boundary(|| {
        let r = try_mut_or_null!(rgrpc_plugin_request, request);
        let key = match str_or_error(&mut r.last_error, key, "metadata key") {
            Ok(k) => k,
            Err(e) => return e,
        };
        // SAFETY: value is NULL or points to value_len readable bytes.
        let Some(v) = (unsafe { bytes_arg(value, value_len) }) else {
            r.last_error = cstring("value is NULL but value_len is not 0");
            return rgrpc_result::NullParameter;
        };
        match r.metadata.add(key, v) {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => {
                r.last_error = cstring(&e.to_string());
                rgrpc_result::InvalidMetadata
            }
        }
    })
}

/// The message of the most recent failed `rgrpc_plugin_request_add_metadata`
/// on `request` (`""` if none, or for NULL). Borrowed: valid until the
/// next call on `request` (which `complete` and `fail` free).
#[no_mangle]
pub extern "C" fn rgrpc_plugin_request_last_error(
    request: *const rgrpc_plugin_request,
) -> *const c_char {
    boundary(|| {
        // SAFETY: request is NULL or a live plugin request.
        match unsafe { try_ref::<rgrpc_plugin_request>(request) } {
            Some(r) => r.last_error.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

fn take_request(request: *mut rgrpc_plugin_request) -> Option<Box<PluginRequest>> {
    if request.is_null() {
        return None;
    }
    // SAFETY: request is a live request owned by the caller, consumed here.
    Some(unsafe { Box::from_raw(request as *mut PluginRequest) })
}

/// Answers a plugin request with the metadata added to it; the call
/// proceeds. Frees `request`. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Any thread.
#[no_mangle]
pub extern "C" fn rgrpc_plugin_request_complete(
    request: *mut rgrpc_plugin_request,
) -> rgrpc_result {
    boundary(|| match take_request(request) {
        Some(r) => {
            let r = *r;
            r.responder.complete(r.metadata);
            rgrpc_result::Ok
        }
        None => rgrpc_result::NullParameter,
    })
}

/// Fails the call a plugin request is for, with `code` (a gRPC status
/// code; 0 or out of range means UNAUTHENTICATED) and `details` (UTF-8, may
/// be NULL). Frees `request`. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Any thread.
#[no_mangle]
pub extern "C" fn rgrpc_plugin_request_fail(
    request: *mut rgrpc_plugin_request,
    code: u32,
    details: *const c_char,
) -> rgrpc_result {
    boundary(|| {
        let Some(r) = take_request(request) else {
            return rgrpc_result::NullParameter;
        };
        let text = if details.is_null() {
            String::new()
        } else {
            // SAFETY: details is a NUL-terminated string per the header.
            unsafe { std::ffi::CStr::from_ptr(details) }
                .to_string_lossy()
                .into_owned()
        };
        let code = Code::from_u32(code).unwrap_or(Code::Unauthenticated);
        r.responder.fail(code, &text);
        rgrpc_result::Ok
    })
}

/// Call credentials applying each of `list[0..count]` in order, like
/// grpcio's `composite_call_credentials`. The inputs are borrowed.
///
/// Writes new credentials to `*creds_out` (owned:
/// `rgrpc_call_credentials_free`). Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` (list, an element or creds_out NULL) or
/// `RGRPC_RESULT_INVALID_ARGUMENT` (count 0).
#[no_mangle]
pub extern "C" fn rgrpc_call_credentials_composite(
    list: *const *const rgrpc_call_credentials,
    count: usize,
    creds_out: *mut *const rgrpc_call_credentials,
) -> rgrpc_result {
    boundary(|| {
        if list.is_null() || creds_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        if count == 0 {
            return rgrpc_result::InvalidArgument;
        }
        // SAFETY: list points to count readable pointers.
        let ptrs = unsafe { std::slice::from_raw_parts(list, count) };
        let mut v = Vec::with_capacity(count);
        for p in ptrs {
            // SAFETY: each element is NULL or a live call credentials handle.
            match unsafe { try_ref::<rgrpc_call_credentials>(*p) } {
                Some(c) => v.push(c.clone()),
                None => return rgrpc_result::NullParameter,
            }
        }
        let c = CallCredentials::Composite(v);
        write_out!(creds_out, to_arc::<rgrpc_call_credentials>(Arc::new(c)));
        rgrpc_result::Ok
    })
}

/// Releases the caller's reference. NULL is a no-op; channels, channel
/// credentials and call options using them keep their own.
#[no_mangle]
pub extern "C" fn rgrpc_call_credentials_free(creds: *const rgrpc_call_credentials) {
    boundary(|| {
        // SAFETY: creds is NULL or a reference owned by the caller.
        unsafe { free_arc::<rgrpc_call_credentials>(creds) }
    })
}

pub(crate) fn call_credentials_of(p: *const rgrpc_call_credentials) -> Option<CallCredentials> {
    // SAFETY: p is NULL or a live call credentials handle.
    unsafe { try_ref::<rgrpc_call_credentials>(p) }.cloned()
}
