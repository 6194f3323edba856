'use strict';
// A small Node.js client over librgrpc's C API (include/rgrpc.h) through the
// koffi FFI package: no compiled addon, only the C ABI, as any language with
// a C FFI would use it. Messages are bytes (Buffers): serialize them with any
// protobuf library.
//
//   const rgrpc = require('./rgrpc');
//   const ch = new rgrpc.Channel('127.0.0.1:50051');
//   const reply = ch.unary('/pkg.Service/Method', requestBytes, { timeoutMs: 5000 });
//   for (const msg of ch.serverStream('/pkg.Service/Stream', requestBytes)) { ... }
//   const reply2 = await ch.unaryAsync('/pkg.Service/Method', requestBytes);
//   ch.close();
//
// Blocking calls (unary, the stream methods) run the call's I/O on the
// calling thread, as in C; unaryAsync runs in the background and resolves
// from the library's completion callback, which koffi hands to the main
// thread.
//
// The library: $RGRPC_LIBRARY (a full path) if set, else librgrpc by the
// soname of this checkout's version (Cargo.toml), found by the dynamic
// loader (an installed prefix's lib/ in LD_LIBRARY_PATH, or ld.so.cache).

const fs = require('fs');
const path = require('path');
const koffi = require('koffi');

/** librgrpc's soname for the workspace version in ../../Cargo.toml, or null. */
function sonameFromCargoToml() {
  let text;
  try {
    text = fs.readFileSync(path.join(__dirname, '..', '..', 'Cargo.toml'), 'utf8');
  } catch {
    return null;
  }
  const m = /^\[workspace\.package\]\n(?:[^[\n][^\n]*\n|\n)*?version = "(\d+)\.(\d+)\.\d+"/m.exec(text);
  if (!m) return null;
  return m[1] === '0' ? `librgrpc.so.0.${m[2]}` : `librgrpc.so.${m[1]}`;
}

const libraryPath = process.env.RGRPC_LIBRARY || sonameFromCargoToml() || 'librgrpc.so';
const lib = koffi.load(libraryPath);

// Opaque handles, as in the header.
for (const name of ['rgrpc_channel', 'rgrpc_call', 'rgrpc_call_options', 'rgrpc_buffer',
  'rgrpc_status', 'rgrpc_error', 'rgrpc_channel_credentials', 'rgrpc_channel_options']) {
  koffi.opaque(name);
}
koffi.alias('rgrpc_result', 'uint32_t');
koffi.alias('rgrpc_status_code', 'uint32_t');
const UnaryDoneCb = koffi.proto(
  'void rgrpc_unary_done_cb(void *user_data, const rgrpc_status *status, const void *response, size_t response_len)');

// Prototypes exactly as in include/rgrpc.h (byte pointers as void * where
// koffi should pass a Buffer or hand back a raw pointer).
const c = {
  version: lib.func('const char *rgrpc_version(void)'),
  shutdown: lib.func('rgrpc_result rgrpc_shutdown(void)'),
  resultName: lib.func('const char *rgrpc_result_name(uint32_t result)'),
  statusCodeName: lib.func('const char *rgrpc_status_code_name(uint32_t code)'),
  errorMessage: lib.func('const char *rgrpc_error_message(const rgrpc_error *error)'),
  errorFree: lib.func('void rgrpc_error_free(rgrpc_error *error)'),
  channelNew: lib.func('rgrpc_result rgrpc_channel_new(const char *target, const rgrpc_channel_credentials *creds, const rgrpc_channel_options *opts, _Out_ rgrpc_channel **channel_out, _Out_ rgrpc_error **error_out)'),
  channelFree: lib.func('void rgrpc_channel_free(rgrpc_channel *channel)'),
  optionsNew: lib.func('rgrpc_call_options *rgrpc_call_options_new(void)'),
  optionsTimeout: lib.func('rgrpc_result rgrpc_call_options_set_timeout_ms(rgrpc_call_options *opts, int64_t timeout_ms)'),
  optionsMetadata: lib.func('rgrpc_result rgrpc_call_options_add_metadata(rgrpc_call_options *opts, const char *key, const void *value, size_t value_len)'),
  optionsFree: lib.func('void rgrpc_call_options_free(rgrpc_call_options *opts)'),
  unary: lib.func('rgrpc_result rgrpc_call_unary(rgrpc_channel *channel, const char *method, const rgrpc_call_options *opts, const void *request, size_t request_len, _Out_ rgrpc_buffer **response_out, _Out_ const rgrpc_status **status_out)'),
  unaryAsync: lib.func('rgrpc_result rgrpc_call_unary_async(rgrpc_channel *channel, const char *method, const rgrpc_call_options *opts, const void *request, size_t request_len, rgrpc_unary_done_cb *cb, void *user_data, rgrpc_call **call_out)'),
  start: lib.func('rgrpc_result rgrpc_call_start(rgrpc_channel *channel, const char *method, const rgrpc_call_options *opts, _Out_ rgrpc_call **call_out)'),
  send: lib.func('rgrpc_result rgrpc_call_send(rgrpc_call *call, const void *data, size_t len, uint32_t flags)'),
  closeSend: lib.func('rgrpc_result rgrpc_call_close_send(rgrpc_call *call)'),
  recv: lib.func('rgrpc_result rgrpc_call_recv(rgrpc_call *call, _Out_ rgrpc_buffer **msg_out)'),
  finish: lib.func('rgrpc_result rgrpc_call_finish(rgrpc_call *call, _Out_ const rgrpc_status **status_out)'),
  cancel: lib.func('rgrpc_result rgrpc_call_cancel(rgrpc_call *call)'),
  callFree: lib.func('void rgrpc_call_free(rgrpc_call *call)'),
  bufferData: lib.func('const void *rgrpc_buffer_data(const rgrpc_buffer *buffer)'),
  bufferLen: lib.func('size_t rgrpc_buffer_len(const rgrpc_buffer *buffer)'),
  bufferFree: lib.func('void rgrpc_buffer_free(rgrpc_buffer *buffer)'),
  statusCode: lib.func('rgrpc_status_code rgrpc_status_get_code(const rgrpc_status *status)'),
  statusDetails: lib.func('const char *rgrpc_status_details(const rgrpc_status *status)'),
  statusFree: lib.func('void rgrpc_status_free(const rgrpc_status *status)'),
};

const OK = 0;
const END_OF_STREAM = 7012;
const RPC_FAILED = 7016;
const SEND_LAST = 1;

/** A failed RPC (code: the gRPC status code, 0..16) or API call (result >= 7000). */
class RpcError extends Error {
  constructor(message, { code = null, details = '', result = null } = {}) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.codeName = code === null ? null : c.statusCodeName(code);
    this.details = details;
    this.result = result;
  }
}

/** Copies `len` bytes at a C pointer into a new Buffer. */
function copyBytes(ptr, len) {
  len = Number(len);
  if (!len) return Buffer.alloc(0);
  return Buffer.from(new Uint8Array(koffi.view(ptr, len)));
}

/** Takes (copies and frees) a received rgrpc_buffer. */
function takeBuffer(buf) {
  try {
    return copyBytes(c.bufferData(buf), c.bufferLen(buf));
  } finally {
    c.bufferFree(buf);
  }
}

function statusError(what, status) {
  const code = c.statusCode(status);
  const details = c.statusDetails(status) || '';
  return new RpcError(`${what}: ${c.statusCodeName(code)}: ${details}`, { code, details });
}

function check(rc, what) {
  if (rc !== OK) throw new RpcError(`${what}: ${c.resultName(rc)}`, { result: rc });
}

function bytes(data) {
  return Buffer.isBuffer(data) ? data : Buffer.from(data);
}

/** Call options from { timeoutMs, metadata: { key: string | Buffer } }; null for none. */
function makeOptions(opts = {}) {
  if (opts.timeoutMs === undefined && !opts.metadata) return null;
  const o = c.optionsNew();
  try {
    if (opts.timeoutMs !== undefined) check(c.optionsTimeout(o, opts.timeoutMs), 'timeout');
    for (const [key, value] of Object.entries(opts.metadata || {})) {
      const v = bytes(value);
      check(c.optionsMetadata(o, key, v, v.length), `metadata ${key}`);
    }
    return o;
  } catch (e) {
    c.optionsFree(o);
    throw e;
  }
}

function withOptions(opts, fn) {
  const o = makeOptions(opts);
  try {
    return fn(o);
  } finally {
    if (o) c.optionsFree(o);
  }
}

/** A streaming call: send / closeSend / recv / finish, as rgrpc_call in C. */
class Call {
  constructor(handle) {
    this.handle = handle;
  }

  send(data, { last = false } = {}) {
    const b = bytes(data);
    check(c.send(this.handle, b, b.length, last ? SEND_LAST : 0), 'send');
  }

  closeSend() {
    check(c.closeSend(this.handle), 'close_send');
  }

  /** The next message, or null at the end of the stream. */
  recv() {
    const out = [null];
    const rc = c.recv(this.handle, out);
    if (rc === OK) return takeBuffer(out[0]);
    if (rc === END_OF_STREAM) return null;
    if (rc === RPC_FAILED) return null; // finish() reports the status
    check(rc, 'recv');
    return null;
  }

  /** Waits for the status; throws RpcError unless it is OK. Frees the call. */
  finish() {
    const out = [null];
    try {
      const rc = c.finish(this.handle, out);
      if (out[0]) {
        try {
          if (c.statusCode(out[0]) !== 0) throw statusError('call', out[0]);
        } finally {
          c.statusFree(out[0]);
        }
      }
      check(rc, 'finish');
    } finally {
      this.free();
    }
  }

  cancel() {
    if (this.handle) c.cancel(this.handle);
  }

  free() {
    if (this.handle) {
      c.callFree(this.handle);
      this.handle = null;
    }
  }
}

class Channel {
  /** An insecure (plaintext) channel to `target` ("host:port", "unix:/path", ...). */
  constructor(target) {
    const ch = [null];
    const err = [null];
    const rc = c.channelNew(target, null, null, ch, err);
    if (rc !== OK) {
      const msg = err[0] ? c.errorMessage(err[0]) : c.resultName(rc);
      if (err[0]) c.errorFree(err[0]);
      throw new RpcError(`channel ${target}: ${msg}`, { result: rc });
    }
    this.handle = ch[0];
  }

  /** One request, one response (blocking). */
  unary(method, request, opts) {
    const req = bytes(request);
    return withOptions(opts, (o) => {
      const resp = [null];
      const st = [null];
      const rc = c.unary(this.handle, method, o, req, req.length, resp, st);
      try {
        if (rc === RPC_FAILED && st[0]) throw statusError(method, st[0]);
        check(rc, method);
        return takeBuffer(resp[0]);
      } finally {
        if (st[0]) c.statusFree(st[0]);
      }
    });
  }

  /** One request, one response, in the background: a Promise of the response. */
  unaryAsync(method, request, opts) {
    const req = bytes(request);
    return new Promise((resolve, reject) => {
      let registered = null;
      // koffi's hand-over from a library thread does not keep Node's event
      // loop alive by itself: a timer does, until the callback ran.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const release = () => {
        clearInterval(keepAlive);
        setImmediate(() => koffi.unregister(registered));
      };
      const done = (userData, status, response, len) => {
        // Runs on the main thread (koffi queues the library thread's call);
        // status and response are borrowed until it returns: copy them.
        try {
          if (c.statusCode(status) === 0) resolve(copyBytes(response, len));
          else reject(statusError(method, status));
        } catch (e) {
          reject(e);
        } finally {
          release();
        }
      };
      registered = koffi.register(done, koffi.pointer(UnaryDoneCb));
      try {
        withOptions(opts, (o) => {
          check(c.unaryAsync(this.handle, method, o, req, req.length, registered, null, null), method);
        });
      } catch (e) {
        release();
        reject(e);
      }
    });
  }

  /** Starts a call for any pattern; see Call. */
  start(method, opts) {
    return withOptions(opts, (o) => {
      const out = [null];
      check(c.start(this.handle, method, o, out), method);
      return new Call(out[0]);
    });
  }

  /** One request, a stream of responses: yields each (blocking). */
  *serverStream(method, request, opts) {
    const call = this.start(method, opts);
    try {
      call.send(request, { last: true });
      for (let msg; (msg = call.recv()) !== null;) yield msg;
      call.finish();
    } finally {
      call.free();
    }
  }

  /** A stream of requests (any iterable), one response. */
  clientStream(method, requests, opts) {
    const call = this.start(method, opts);
    try {
      for (const r of requests) call.send(r);
      call.closeSend();
      const reply = call.recv();
      call.finish();
      return reply;
    } finally {
      call.free();
    }
  }

  close() {
    if (this.handle) {
      c.channelFree(this.handle);
      this.handle = null;
    }
  }
}

/**
 * The library's global cleanup (rgrpc_shutdown): closes every channel (open
 * calls end CANCELLED) and stops its threads. Final: later channels and
 * calls fail. Call it at exit, when no call is running (also none started
 * with unaryAsync); calling it again does nothing.
 */
function shutdown() {
  check(c.shutdown(), 'rgrpc_shutdown');
}

module.exports = { Channel, Call, RpcError, libraryPath, shutdown, version: () => c.version() };
