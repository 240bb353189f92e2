// Conformance: kdiag-manager driven by an independent gRPC implementation,
// @grpc/grpc-js with @grpc/proto-loader (installed by setup.sh into the build
// dir). Like grpcurl, the Ps call is also made from descriptors fetched by
// server reflection alone. Exec (bidi), CopyTo (client stream), CopyFrom and
// Capture (server streams) run against a target process of the test's own: a
// sleep in a mount namespace of its own with a tmpfs on /mnt.
//
//   node conformance.js <node_modules dir> <kdiag-manager> <api dir>
'use strict';
const path = require('path');
const { spawn } = require('child_process');
const net = require('net');
const fs = require('fs');
const crypto = require('crypto');
const dgram = require('dgram');
const assert = require('assert');

const [modules, managerPath, apiDir] = process.argv.slice(2);
const grpc = require(path.join(modules, '@grpc/grpc-js'));
const protoLoader = require(path.join(modules, '@grpc/proto-loader'));
const descriptor = require(path.join(modules, 'protobufjs/ext/descriptor'));

const loadOpts = { keepCase: true, longs: Number, defaults: true, oneofs: true };
const SECRET = '00112233445566778899aabbccddeeff'; // the debug container's KDIAG_SECRET
let passed = 0, failed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack || e}`);
  }
}

function startManager() {
  return new Promise((resolve, reject) => {
    const p = spawn(managerPath, [], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KDIAG_SECRET: SECRET } });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no startup lines: ${out}`)), 10000);
    p.stdout.on('data', (d) => {
      out += d;
      const port = /^Listening on 127\.0\.0\.1:(\d+)$/m.exec(out);
      const token = /^Token: ([0-9a-f]{32})$/m.exec(out);
      if (port && token) {
        clearTimeout(timer);
        resolve({ proc: p, port: Number(port[1]), token: token[1] });
      }
    });
    p.on('exit', (code) => reject(new Error(`manager exited ${code}: ${out}`)));
  });
}

function listen(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, host, () => resolve(s));
  });
}

function unary(client, method, req, md, deadlineMs = 30000) {
  return new Promise((resolve) => {
    client[method](req, md, { deadline: Date.now() + deadlineMs }, (err, resp) => resolve({ err, resp }));
  });
}

function bearer(token) {
  const md = new grpc.Metadata();
  if (token !== null) md.add('authorization', `Bearer ${token}`);
  return md;
}

// One reflection exchange per request on a single bidi stream.
function reflect(stub, md, requests) {
  return new Promise((resolve, reject) => {
    const call = stub.ServerReflectionInfo(md, { deadline: Date.now() + 30000 });
    const answers = [];
    call.on('data', (r) => {
      answers.push(r);
      if (answers.length === requests.length) call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve(answers));
    for (const r of requests) call.write(r);
  });
}

function checkPs(resp, port4, port6, managerPid) {
  const me = resp.processes.find((p) => p.pid === process.pid);
  assert.ok(me, `Ps has no entry for this node process (pid ${process.pid})`);
  assert.strictEqual(me.ppid, process.ppid);
  assert.match(me.name, /node/);
  const tcp = me.listen_addresses.map((a) => `${a.protocol} ${a.ip} ${a.port}`);
  assert.ok(tcp.includes(`tcp 127.0.0.1 ${port4}`), `listen addresses ${tcp}`);
  assert.ok(tcp.includes(`tcp ::1 ${port6}`), `listen addresses ${tcp}`);
  assert.ok(!resp.processes.some((p) => p.pid === managerPid), 'Ps lists the manager itself');
}

// A sleep in a mount namespace of its own, /mnt a tmpfs only it sees (marker
// file inside): Exec and the Copy RPCs work in its namespaces and root.
function startTarget() {
  return new Promise((resolve, reject) => {
    const p = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs conform /mnt && touch /mnt/conform-marker && exec sleep 1000'], { stdio: 'ignore' });
    p.on('error', reject);
    const until = Date.now() + 10000;
    const poll = () => {
      let comm = '';
      try { comm = fs.readFileSync(`/proc/${p.pid}/comm`, 'utf8'); } catch (e) { /* not yet */ }
      if (comm.startsWith('sleep')) resolve(p);
      else if (Date.now() > until) reject(new Error('the target did not start'));
      else setTimeout(poll, 20);
    };
    poll();
  });
}

// Reads a response stream to its end: { msgs, err } (err null when OK).
function drain(call, onMsg = () => {}) {
  return new Promise((resolve) => {
    const msgs = [];
    call.on('data', (m) => { msgs.push(m); onMsg(m, call); });
    call.on('error', (err) => resolve({ msgs, err }));
    call.on('end', () => resolve({ msgs, err: null }));
  });
}

// One Exec: start, then each of input (ExecRequest objects) in order; the
// client half-closes after the exit, as docs/exec.md says. onOut(text, call)
// sees the stdout so far. { out, err (stderr), exit, status }.
async function exec(client, md, start, input = [], onOut = () => {}) {
  const call = client.Exec(md, { deadline: Date.now() + 30000 });
  let out = Buffer.alloc(0), errb = Buffer.alloc(0), exit = null;
  const done = drain(call, (m) => {
    if (m.msg === 'stdout_chunk') out = Buffer.concat([out, m.stdout_chunk]);
    else if (m.msg === 'stderr_chunk') errb = Buffer.concat([errb, m.stderr_chunk]);
    else if (m.msg === 'exit') { exit = m.exit; call.end(); return; }
    else throw new Error(`ExecResponse without a known case: ${JSON.stringify(m)}`);
    onOut(out.toString('latin1'), call);
  });
  if (start) call.write({ start });
  for (const r of input) call.write(r);
  const { err } = await done;
  return { out, stderr: errb, exit, status: err };
}

const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000;

// The tree CopyTo sends and CopyFrom must give back: path -> entry (data for files).
function testTree() {
  const big = Buffer.alloc(300000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) >> 3 & 0xff;
  return [
    { path: 'tree', mode: S_IFDIR | 0o750, mtime_sec: 1600000000, mtime_nsec: 5 },
    { path: 'tree/a.txt', mode: S_IFREG | 0o640, mtime_sec: 1600000001, mtime_nsec: 123456789, data: Buffer.from('hello\0world\n') },
    { path: 'tree/empty', mode: S_IFREG | 0o4755, mtime_sec: 1600000002, mtime_nsec: 0, data: Buffer.alloc(0) },
    { path: 'tree/sub', mode: S_IFDIR | 0o700, mtime_sec: 1600000003, mtime_nsec: 0 },
    { path: 'tree/sub/big.bin', mode: S_IFREG | 0o600, mtime_sec: 1600000004, mtime_nsec: 0, data: big },
    { path: 'tree/link', mode: S_IFLNK | 0o777, mtime_sec: 1600000005, mtime_nsec: 0, link_target: 'sub/big.bin' },
  ];
}

// A tree as CopyChunks: each entry, then its data in 128 KiB pieces.
function treeChunks(tree) {
  const chunks = [];
  for (const e of tree) {
    const entry = { path: e.path, mode: e.mode, uid: 0, gid: 0, mtime_sec: e.mtime_sec, mtime_nsec: e.mtime_nsec,
      size: e.data ? e.data.length : 0, link_target: e.link_target || '' };
    chunks.push({ entry });
    for (let off = 0; e.data && off < e.data.length; off += 128 * 1024)
      chunks.push({ data: e.data.subarray(off, off + 128 * 1024) });
  }
  return chunks;
}

// CopyTo without ack_bytes: one answer at the end. { err, resp (the last answer) }.
async function copyTo(client, md, first, chunks) {
  const call = client.CopyTo(md, { deadline: Date.now() + 30000 });
  const done = drain(call);
  if (first) call.write(first);
  for (const chunk of chunks) call.write({ chunk });
  call.end();
  const { msgs, err } = await done;
  return { err, resp: msgs[msgs.length - 1], msgs };
}

// CopyFrom's stream back into entries (data joined, holes as zeros).
async function copyFrom(client, md, req) {
  const { msgs, err } = await drain(client.CopyFrom(req, md, { deadline: Date.now() + 30000 }));
  const tree = [];
  for (const c of msgs) {
    if (c.entry) {
      const e = c.entry;
      tree.push({ path: e.path, mode: e.mode, mtime_sec: e.mtime_sec, mtime_nsec: e.mtime_nsec, size: e.size,
        link_target: e.link_target, data: (e.mode & 0o170000) === S_IFREG ? Buffer.alloc(0) : undefined });
    } else {
      const last = tree[tree.length - 1];
      const add = c.data && c.data.length ? c.data : Buffer.alloc(c.hole || 0);
      last.data = Buffer.concat([last.data, add]);
    }
  }
  return { tree, err };
}

async function main() {
  const m = await startManager();
  const target = `127.0.0.1:${m.port}`;
  const s4 = await listen('127.0.0.1');
  const s6 = await listen('::1');
  const port4 = s4.address().port, port6 = s6.address().port;

  const kdiag = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(apiDir, 'kdiag.proto'), loadOpts));
  const client = new kdiag.kdiag.solo.io.Manager(target, grpc.credentials.createInsecure());

  await check('Ps with the token lists this process and its listeners', async () => {
    const { err, resp } = await unary(client, 'Ps', {}, bearer(m.token));
    assert.ifError(err);
    checkPs(resp, port4, port6, m.proc.pid);
  });

  await check('Ps without or with a wrong token is UNAUTHENTICATED', async () => {
    for (const t of [null, '0'.repeat(32), m.token.slice(1)]) {
      const { err } = await unary(client, 'Ps', {}, bearer(t));
      assert.ok(err, 'call succeeded');
      assert.strictEqual(err.code, grpc.status.UNAUTHENTICATED);
    }
  });

  await check('Hello without a token: the proofs are HMAC-SHA256 over the context, nonce and fields, and over the nonce and token (docs/contract.md)', async () => {
    const nonce = crypto.randomBytes(32);
    const { err, resp } = await unary(client, 'Hello', { nonce }, bearer(null));
    assert.ifError(err);
    assert.strictEqual(resp.grpc_port, m.port);
    assert.strictEqual(resp.target_found, true);
    const fields = Buffer.from([resp.target_found ? 1 : 0, resp.grpc_port >> 8, resp.grpc_port & 255,
      resp.tunnel_port >> 8, resp.tunnel_port & 255]);
    const want = crypto.createHmac('sha256', SECRET).update('kdiag-manager hello v1\n').update(nonce).update(fields).digest();
    assert.deepStrictEqual(Buffer.from(resp.proof), want);
    const tokenProof = crypto.createHmac('sha256', SECRET).update('kdiag-manager hello token v1\n').update(nonce)
      .update(m.token).digest();
    assert.deepStrictEqual(Buffer.from(resp.token_proof), tokenProof);
    const short = await unary(client, 'Hello', { nonce: nonce.subarray(0, 8) }, bearer(null));
    assert.strictEqual(short.err.code, grpc.status.INVALID_ARGUMENT);
  });

  await check('Pprof is UNIMPLEMENTED with the message', async () => {
    const { err } = await unary(client, 'Pprof', { pid: 1 }, bearer(m.token));
    assert.strictEqual(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /pprof is not supported by kdiag-c's manager/);
  });

  for (const v of ['v1alpha', 'v1']) {
    await check(`reflection ${v}: list, describe, then call Ps from reflected descriptors only`, async () => {
      const refl = grpc.loadPackageDefinition(
        protoLoader.loadSync(path.join(apiDir, `reflection_${v}.proto`), loadOpts));
      const stub = new refl.grpc.reflection[v].ServerReflection(target, grpc.credentials.createInsecure());
      const [list, file] = await reflect(stub, bearer(m.token), [
        { host: '', list_services: '' },
        { host: '', file_containing_symbol: 'kdiag.solo.io.Manager' },
      ]);
      const names = list.list_services_response.service.map((s) => s.name);
      assert.ok(names.includes('kdiag.solo.io.Manager'), `services ${names}`);
      const fdps = file.file_descriptor_response.file_descriptor_proto;
      const fdp = descriptor.FileDescriptorProto.decode(fdps[0]);
      assert.strictEqual(fdp.name, 'kdiag.proto');
      assert.strictEqual(fdp.package, 'kdiag.solo.io');
      const svc = fdp.service.find((s) => s.name === 'Manager');
      const kinds = svc.method.map((x) => `${x.name} ${x.clientStreaming ? 'stream' : 'one'}>${x.serverStreaming ? 'stream' : 'one'}`);
      assert.deepStrictEqual(kinds, ['Redirect one>stream', 'Ps one>one', 'Pprof one>one', 'HalfClose one>one',
        'Capture one>stream', 'CopyFrom one>stream', 'CopyTo stream>stream', 'Exec stream>stream', 'Hello one>one']);

      const set = descriptor.FileDescriptorSet.encode({ file: fdps.map((b) => descriptor.FileDescriptorProto.decode(b)) }).finish();
      const dyn = grpc.loadPackageDefinition(protoLoader.loadFileDescriptorSetFromBuffer(set, loadOpts));
      const c2 = new dyn.kdiag.solo.io.Manager(target, grpc.credentials.createInsecure());
      const { err, resp } = await unary(c2, 'Ps', {}, bearer(m.token));
      assert.ifError(err);
      checkPs(resp, port4, port6, m.proc.pid);
      c2.close();
      stub.close();
    });
  }

  const tgt = await startTarget();
  const inTgt = { pid: tgt.pid };
  const md = () => bearer(m.token);

  await check('Exec: stdin in two chunks, stdin_close, stdout byte-exact, stderr, exit code, in the target', async () => {
    const input = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0x80, 0x41]);
    const r = await exec(client, md(), { argv: ['sh', '-c', 'cat; echo err >&2; ls /mnt; exit 3'], target: inTgt },
      [{ stdin_chunk: input.subarray(0, 4) }, { stdin_chunk: input.subarray(4) }, { stdin_close: true }]);
    assert.ifError(r.status);
    assert.deepStrictEqual(r.out, Buffer.concat([input, Buffer.from('conform-marker\n')]));
    assert.strictEqual(r.stderr.toString(), 'err\n');
    assert.deepStrictEqual(r.exit, { code: 3, signal: 0, error: '' });
  });

  // (exec() refuses a stdin_taken: without stdin_ack_bytes none comes.)
  await check('Exec: with stdin_ack_bytes, stdin_taken as the program takes its stdin', async () => {
    const input = Buffer.alloc(300000, 0x61);
    const call = client.Exec(md(), { deadline: Date.now() + 30000 });
    const taken = [];
    let exit = null;
    const done = drain(call, (m) => {
      if (m.msg === 'stdin_taken') {
        taken.push(m.stdin_taken);
        if (m.stdin_taken === input.length) call.write({ stdin_close: true }); // then `read` ends
      } else if (m.msg === 'exit') { exit = m.exit; call.end(); }
    });
    call.write({ start: { argv: ['sh', '-c', 'head -c 300000 >/dev/null; read x; echo done'], target: inTgt,
      stdin_ack_bytes: 65536 } });
    for (let off = 0; off < input.length; off += 100000) call.write({ stdin_chunk: input.subarray(off, off + 100000) });
    const { err } = await done;
    assert.ifError(err);
    assert.deepStrictEqual(exit, { code: 0, signal: 0, error: '' });
    // each chunk crosses 64 KiB: an answer after each, those pending when
    // the handler gets to them told as one
    assert.ok(taken.length >= 1 && taken.length <= 3, `answers ${taken}`);
    assert.strictEqual(taken[taken.length - 1], input.length, `answers ${taken}`);
    for (let i = 0; i < taken.length; i++) {
      assert.strictEqual(taken[i] % 100000, 0, `answers ${taken}: whole chunks`);
      assert.ok(i === 0 || taken[i] > taken[i - 1], `answers ${taken}: increasing`);
    }
  });

  await check('Exec: a signal message ends the program: exit 128+15, signal 15', async () => {
    let sent = false;
    const r = await exec(client, md(), { argv: ['sh', '-c', 'echo ready; exec sleep 100'], target: inTgt }, [],
      (out, call) => { if (!sent && out === 'ready\n') { sent = true; call.write({ signal: 15 }); } });
    assert.ifError(r.status);
    assert.ok(sent, `output ${r.out}`);
    assert.deepStrictEqual(r.exit, { code: 143, signal: 15, error: '' });
  });

  await check('Exec: a program not in the target is exit 127 with the reason', async () => {
    const r = await exec(client, md(), { argv: ['conform-no-such-program'], target: inTgt }, [{ stdin_close: true }]);
    assert.ifError(r.status);
    assert.strictEqual(r.exit.code, 127);
    assert.strictEqual(r.exit.signal, 0);
    assert.match(r.exit.error, /conform-no-such-program: command not found in the target's PATH/);
  });

  await check('Exec: a tty of the requested size, stdout and stderr merged', async () => {
    const r = await exec(client, md(), { argv: ['sh', '-c', 'stty size; echo e >&2'], tty: true, rows: 33, cols: 77, target: inTgt });
    assert.ifError(r.status);
    assert.strictEqual(r.out.toString(), '33 77\r\ne\r\n');
    assert.strictEqual(r.exit.code, 0);
  });

  await check('Exec: stdin before the start message is INVALID_ARGUMENT', async () => {
    const r = await exec(client, md(), null, [{ stdin_chunk: Buffer.from('x') }, { start: { argv: ['true'], target: inTgt } }]);
    assert.ok(r.status, 'call succeeded');
    assert.strictEqual(r.status.code, grpc.status.INVALID_ARGUMENT);
    assert.strictEqual(r.exit, null);
  });

  await check('CopyTo then CopyFrom: a tree round trip, bytes, modes, mtimes and the link exact', async () => {
    const tree = testTree();
    const { err, resp, msgs } = await copyTo(client, md(), { target: inTgt, path: '/mnt' }, treeChunks(tree));
    assert.ifError(err);
    const bytes = tree.reduce((n, e) => n + (e.data ? e.data.length : 0), 0);
    assert.strictEqual(msgs.length, 1, 'one answer when no ack_bytes were asked for');
    assert.strictEqual(resp.entries, tree.length);
    assert.strictEqual(resp.bytes, bytes);
    assert.ok(resp.taken > bytes, `taken ${resp.taken}: the chunk messages, larger than the content`);
    const root = `/proc/${tgt.pid}/root/mnt`;
    for (const e of tree) { // what the target sees
      const st = fs.lstatSync(`${root}/${e.path}`, { bigint: true });
      assert.strictEqual(Number(st.mode), e.mode, e.path);
      assert.strictEqual(st.mtimeNs, BigInt(e.mtime_sec) * 1000000000n + BigInt(e.mtime_nsec), e.path);
      if (e.data) assert.deepStrictEqual(fs.readFileSync(`${root}/${e.path}`), e.data, e.path);
      if (e.link_target) assert.strictEqual(fs.readlinkSync(`${root}/${e.path}`), e.link_target);
    }
    const back = await copyFrom(client, md(), { target: inTgt, path: '/mnt/tree' });
    assert.ifError(back.err);
    const byPath = (t) => Object.fromEntries(t.map((e) => [e.path, e]));
    const got = byPath(back.tree);
    assert.deepStrictEqual(Object.keys(got).sort(), tree.map((e) => e.path).sort());
    assert.strictEqual(back.tree[0].path, 'tree');
    for (const e of tree) {
      const g = got[e.path];
      assert.strictEqual(g.mode, e.mode, e.path);
      assert.strictEqual(g.mtime_sec, e.mtime_sec, e.path);
      assert.strictEqual(g.mtime_nsec, e.mtime_nsec, e.path);
      assert.strictEqual(g.link_target, e.link_target || '', e.path);
      if (e.data) assert.deepStrictEqual(g.data, e.data, e.path);
    }
  });

  await check('CopyTo with ack_bytes: an answer each time that many more bytes were taken, then the last', async () => {
    const tree = testTree();
    const { err, msgs } = await copyTo(client, md(), { target: inTgt, path: '/mnt/acked', ack_bytes: 65536 },
      treeChunks(tree));
    assert.ifError(err);
    assert.ok(msgs.length >= 3, `${msgs.length} answers: one per 128 KiB data message (two), then the last`);
    const last = msgs[msgs.length - 1];
    let prev = 0;
    for (const m of msgs.slice(0, -1)) {
      assert.ok(m.taken - prev >= 65536, `an answer after ${m.taken - prev} bytes`);
      assert.ok(m.taken - prev < 65536 + 140000, `an answer late: after ${m.taken - prev} bytes`);
      assert.ok(m.bytes <= last.bytes);
      prev = m.taken;
    }
    assert.ok(last.taken >= prev, 'the last answer counts everything');
    assert.strictEqual(last.entries, tree.length);
    assert.strictEqual(last.bytes, tree.reduce((n, e) => n + (e.data ? e.data.length : 0), 0));
    assert.deepStrictEqual(fs.readFileSync(`/proc/${tgt.pid}/root/mnt/acked/sub/big.bin`), tree[4].data);
  });

  await check('CopyFrom of a missing path is NOT_FOUND naming it; CopyTo with a chunk first is INVALID_ARGUMENT', async () => {
    const { err } = await copyFrom(client, md(), { target: inTgt, path: '/mnt/conform-missing' });
    assert.strictEqual(err && err.code, grpc.status.NOT_FOUND);
    assert.match(err.details, /\/mnt\/conform-missing: No such file or directory \(ENOENT\)/);
    const r = await copyTo(client, md(), null, treeChunks(testTree()).slice(0, 2));
    assert.strictEqual(r.err && r.err.code, grpc.status.INVALID_ARGUMENT);
  });

  await check('Capture on lo: ready, 3 of 5 known UDP packets (count 3), final counts, OK', async () => {
    const rx = dgram.createSocket('udp4');
    await new Promise((resolve) => rx.bind(0, '127.0.0.1', resolve));
    const port = rx.address().port;
    const tx = dgram.createSocket('udp4');
    const call = client.Capture({ interface: 'lo', filter: `udp and dst port ${port}`, count: 3 }, md(),
      { deadline: Date.now() + 20000 });
    const { msgs, err } = await drain(call, (m) => {
      if (!m.ready) return;
      for (let i = 0; i < 5; i++) tx.send(`conform-${i}`, port, '127.0.0.1');
    });
    rx.close();
    tx.close();
    assert.ifError(err);
    const ready = msgs[0];
    assert.ok(ready.ready);
    assert.strictEqual(ready.linktype, 1);
    assert.strictEqual(ready.snaplen, 262144);
    assert.ok(ready.interfaces.some((i) => i.name === 'lo' && i.index === 1), JSON.stringify(ready.interfaces));
    const pkts = msgs.slice(1).flatMap((x) => x.packets);
    assert.strictEqual(pkts.length, 3);
    pkts.forEach((p, i) => {
      assert.strictEqual(p.ifindex, 1);
      assert.strictEqual(p.original_length, p.data.length);
      assert.strictEqual(p.data.length, 14 + 20 + 8 + 9);
      assert.strictEqual(p.data.subarray(42).toString(), `conform-${i}`);
      assert.ok(Math.abs(p.timestamp_ns / 1e6 - Date.now()) < 60000, `timestamp ${p.timestamp_ns}`);
    });
    assert.strictEqual(msgs[msgs.length - 1].captured, 3);
  });

  await check('Capture with a bad filter is INVALID_ARGUMENT with the reason', async () => {
    const { err } = await drain(client.Capture({ filter: 'conform is not a filter' }, md(), { deadline: Date.now() + 10000 }));
    assert.strictEqual(err && err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /filter 'conform is not a filter'/);
  });

  await check('Exec, CopyTo, CopyFrom and Capture without or with a wrong token are UNAUTHENTICATED', async () => {
    for (const t of [null, '0'.repeat(32)]) {
      const e = await exec(client, bearer(t), { argv: ['true'], target: inTgt }, [{ stdin_close: true }]);
      assert.strictEqual(e.status && e.status.code, grpc.status.UNAUTHENTICATED, 'Exec');
      assert.strictEqual(e.exit, null);
      const to = await copyTo(client, bearer(t), { target: inTgt, path: '/mnt/conform-anon' }, treeChunks(testTree()).slice(1, 3));
      assert.strictEqual(to.err && to.err.code, grpc.status.UNAUTHENTICATED, 'CopyTo');
      const from = await copyFrom(client, bearer(t), { target: inTgt, path: '/mnt/tree' });
      assert.strictEqual(from.err && from.err.code, grpc.status.UNAUTHENTICATED, 'CopyFrom');
      assert.strictEqual(from.tree.length, 0);
      const cap = await drain(client.Capture({ interface: 'lo', count: 1 }, bearer(t), { deadline: Date.now() + 10000 }));
      assert.strictEqual(cap.err && cap.err.code, grpc.status.UNAUTHENTICATED, 'Capture');
      assert.strictEqual(cap.msgs.length, 0);
    }
    assert.ok(!fs.existsSync(`/proc/${tgt.pid}/root/mnt/conform-anon`), 'CopyTo without the token wrote');
  });
  tgt.kill('SIGKILL');

  client.close();
  s4.close();
  s6.close();
  await check('SIGTERM: the manager exits 0', async () => {
    const code = await new Promise((resolve) => {
      m.proc.removeAllListeners('exit');
      m.proc.on('exit', (c, sig) => resolve(sig || c));
      m.proc.kill('SIGTERM');
    });
    assert.strictEqual(code, 0);
  });
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL setup: ${e && e.stack || e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
