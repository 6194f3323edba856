'use strict';
// The Node.js client against a real grpc.testing.TestService server:
//   python3 cbindings-tests/with_server.py --server grpcio -- node --test bindings/node/test/
// (with_server.py sets RGRPC_TEST_TARGET). The messages of the official test
// protos are written and read by hand below: a few bytes each.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const path = require('path');
const rgrpc = require('..');

const target = process.env.RGRPC_TEST_TARGET;
if (!target) throw new Error('RGRPC_TEST_TARGET is not set: run under cbindings-tests/with_server.py');
const SVC = '/grpc.testing.TestService/';

// ---- protobuf, just enough ----
function varint(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
function field(num, bytes) {
  return Buffer.from([(num << 3) | 2, ...varint(bytes.length), ...bytes]);
}
function intField(num, n) {
  return Buffer.from([num << 3, ...varint(n)]);
}
/** Fields of a message: [{num, value}] (varints as numbers, the rest as Buffers). */
function parse(buf) {
  const out = [];
  let i = 0;
  const readVarint = () => {
    let n = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++];
      n += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return n;
    }
  };
  while (i < buf.length) {
    const key = readVarint();
    const num = key >> 3;
    if ((key & 7) === 0) out.push({ num, value: readVarint() });
    else if ((key & 7) === 2) {
      const len = readVarint();
      out.push({ num, value: buf.subarray(i, i + len) });
      i += len;
    } else throw new Error(`wire type ${key & 7}`);
  }
  return out;
}
const get = (msg, num) => parse(msg).find((f) => f.num === num);
/** Length of payload.body in a SimpleResponse / StreamingOutputCallResponse. */
function bodyLength(msg) {
  const payload = get(msg, 1);
  if (!payload) return 0;
  const body = get(payload.value, 2);
  return body ? body.value.length : 0;
}
/** ResponseParameters{size, interval_us} as field 2 of a streaming request. */
function responseParams(size, intervalUs = 0) {
  const p = [intField(1, size)];
  if (intervalUs) p.push(intField(2, intervalUs));
  return field(2, Buffer.concat(p));
}

// ---- tests ----
let ch;
test.before(() => {
  ch = new rgrpc.Channel(target);
});
test.after(() => ch.close());

test('loads librgrpc of this version', () => {
  const cargo = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'Cargo.toml'), 'utf8');
  const v = /^\[workspace\.package\]\n(?:[^[\n][^\n]*\n|\n)*?version = "([^"]+)"/m.exec(cargo)[1];
  assert.ok(rgrpc.version().startsWith(`rgrpc/${v} `), rgrpc.version());
});

test('unary call', () => {
  const reply = ch.unary(SVC + 'UnaryCall', intField(2, 271), { timeoutMs: 10000 });
  assert.strictEqual(bodyLength(reply), 271);
});

test('unary call with metadata', () => {
  const reply = ch.unary(SVC + 'UnaryCall', intField(2, 1), {
    timeoutMs: 10000,
    metadata: { 'x-node': 'yes', 'x-bytes-bin': Buffer.from([0, 1, 2]) },
  });
  assert.strictEqual(bodyLength(reply), 1);
});

test('a failed unary call raises the server status', () => {
  // SimpleRequest{response_status: {code: 3, message: "from node"}}
  const status = Buffer.concat([intField(1, 3), field(2, Buffer.from('from node'))]);
  assert.throws(() => ch.unary(SVC + 'UnaryCall', field(7, status), { timeoutMs: 10000 }),
    (e) => e instanceof rgrpc.RpcError && e.code === 3 && e.codeName === 'INVALID_ARGUMENT'
      && e.details === 'from node');
});

test('server streaming', () => {
  const req = Buffer.concat([responseParams(1), responseParams(20), responseParams(300)]);
  const sizes = [...ch.serverStream(SVC + 'StreamingOutputCall', req, { timeoutMs: 10000 })].map(bodyLength);
  assert.deepStrictEqual(sizes, [1, 20, 300]);
});

test('client streaming', () => {
  const payload = field(1, field(2, Buffer.from('abc')));  // StreamingInputCallRequest{payload{body}}
  const reply = ch.clientStream(SVC + 'StreamingInputCall', [payload, payload, payload], { timeoutMs: 10000 });
  assert.strictEqual(get(reply, 1).value, 9);  // aggregated_payload_size
});

test('bidirectional streaming, ping-pong', () => {
  const call = ch.start(SVC + 'FullDuplexCall', { timeoutMs: 10000 });
  try {
    for (const size of [3, 1, 4, 1, 5]) {
      call.send(responseParams(size));
      assert.strictEqual(bodyLength(call.recv()), size);
    }
    call.closeSend();
    assert.strictEqual(call.recv(), null);
    call.finish();
  } finally {
    call.free();
  }
});

test('deadline exceeded ends a stream with DEADLINE_EXCEEDED', () => {
  const req = Buffer.concat([responseParams(1), responseParams(1, 5000000)]);
  const got = [];
  assert.throws(() => {
    for (const m of ch.serverStream(SVC + 'StreamingOutputCall', req, { timeoutMs: 300 })) got.push(m);
  }, (e) => e.code === 4 && e.codeName === 'DEADLINE_EXCEEDED');
  assert.strictEqual(got.length, 1);
});

test('unary calls in the background, completed by the library callback', async () => {
  const sizes = [10, 2000, 30];
  const replies = await Promise.all(sizes.map((n) => ch.unaryAsync(SVC + 'UnaryCall', intField(2, n))));
  assert.deepStrictEqual(replies.map(bodyLength), sizes);
  const status = Buffer.concat([intField(1, 5), field(2, Buffer.from('gone'))]);
  await assert.rejects(ch.unaryAsync(SVC + 'UnaryCall', field(7, status)),
    (e) => e.code === 5 && e.details === 'gone');
});

// Last: shutdown is final for the process.
test('shutdown ends the library; later channels are refused', () => {
  rgrpc.shutdown();
  rgrpc.shutdown(); // again: nothing happens
  assert.throws(() => new rgrpc.Channel(target), (e) => e.result === 7022 && /shut down/.test(e.message));
});
