// Conformance: kdiag-manager driven by an independent gRPC implementation,
// @grpc/grpc-js with @grpc/proto-loader (installed by setup.sh into the build
// dir). Like grpcurl, the Ps call is also made from descriptors fetched by
// server reflection alone.
//
//   node conformance.js <node_modules dir> <kdiag-manager> <api dir>
'use strict';
const path = require('path');
const { spawn } = require('child_process');
const net = require('net');
const assert = require('assert');

const [modules, managerPath, apiDir] = process.argv.slice(2);
const grpc = require(path.join(modules, '@grpc/grpc-js'));
const protoLoader = require(path.join(modules, '@grpc/proto-loader'));
const descriptor = require(path.join(modules, 'protobufjs/ext/descriptor'));

const loadOpts = { keepCase: true, longs: Number, defaults: true, oneofs: true };
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
    const p = spawn(managerPath, [], { stdio: ['ignore', 'pipe', 'inherit'] });
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
      assert.deepStrictEqual(svc.method.map((x) => x.name), ['Redirect', 'Ps', 'Pprof', 'HalfClose', 'Capture']);
      assert.ok(svc.method[0].serverStreaming);

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
