// gRPC client for the end-to-end tests (@grpc/grpc-js, raw bytes: no
// generated code).
//
// usage: node grpc_client.js NODE_MODULES PORT CA N
//
// Over one TLS channel to localhost:PORT, the same calls as grpc_client.py:
// N unary Echo calls, one Get (NOT_FOUND), one List (3 answers), one Sum (4
// requests), one Chat (2 each way). Prints "ready", waits for a line on
// stdin (the agent attaches to node meanwhile), then prints "done CALLS".
'use strict';
const fs = require('fs');
const path = require('path');

const [nodeModules, port, ca, n] = process.argv.slice(2);
const grpc = require(path.join(nodeModules, '@grpc/grpc-js'));
const client = new grpc.Client(`localhost:${port}`, grpc.credentials.createSsl(fs.readFileSync(ca)));
const raw = (b) => b;

const unary = (method, msg) => new Promise((resolve, reject) =>
  client.makeUnaryRequest(method, raw, raw, msg, (err, resp) => (err ? reject(err) : resolve(resp))));

const collect = (call) => new Promise((resolve, reject) => {
  const got = [];
  call.on('data', (m) => got.push(m));
  call.on('error', reject);
  call.on('end', () => resolve(got));
});

async function main() {
  let calls = 0;
  for (let i = 0; i < Number(n); i++) {
    const r = await unary('/test.Echo/Echo', Buffer.from(`hello ${i}`));
    if (r.toString() !== `hello ${i}`) throw new Error(`echo answered ${r}`);
    calls++;
  }
  try {
    await unary('/test.Echo/Get', Buffer.from('secret-key-42'));
    throw new Error('Get did not fail');
  } catch (err) {
    if (err.code !== grpc.status.NOT_FOUND) throw err;
  }
  calls++;
  const list = await collect(client.makeServerStreamRequest('/test.Echo/List', raw, raw, Buffer.from('x')));
  if (list.length !== 3) throw new Error(`List gave ${list.length}`);
  calls++;
  const sum = await new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest('/test.Echo/Sum', raw, raw, (err, r) => (err ? reject(err) : resolve(r)));
    for (let i = 0; i < 4; i++) call.write(Buffer.from('a'));
    call.end();
  });
  if (sum[0] !== 4) throw new Error(`Sum answered ${sum[0]}`);
  calls++;
  const chat = client.makeBidiStreamRequest('/test.Echo/Chat', raw, raw);
  const answers = collect(chat);
  chat.write(Buffer.from('a'));
  chat.write(Buffer.from('b'));
  chat.end();
  if ((await answers).length !== 2) throw new Error('Chat');
  calls++;
  client.close();
  console.log('done', calls);
  process.exit(0); // stdin keeps the event loop alive
}

console.log('ready');
process.stdin.once('data', () => {
  process.stdin.pause();
  main().catch((err) => { console.error(err); process.exit(1); });
});
