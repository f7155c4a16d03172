// HTTPS client for the end-to-end tests: node's built-in https module.
//
// usage: node https_client.js BASE_URL CA_FILE
//
// One keep-alive connection (an Agent with keepAlive and one socket):
//   GET /hello x3, GET /items/7, GET /missing (404), POST /submit (300 bytes)
// then one new connection per request (agent: false):
//   GET /hello x2, GET /nope (404), POST /submit (300 bytes)
// Requests run one after the other. Prints "done N" with N the number of
// requests, and "ports K" with K the number of distinct local ports used.
'use strict';
const fs = require('fs');
const https = require('https');

const base = new URL(process.argv[2]);
const ca = fs.readFileSync(process.argv[3]);
const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
const ports = new Set();

function request(agent, method, path, want) {
  return new Promise((resolve, reject) => {
    const body = method === 'POST' ? 'n'.repeat(300) : null;
    const headers = body ? { 'Content-Type': 'text/plain', 'Content-Length': body.length } : {};
    const req = https.request({
      host: base.hostname, port: base.port, method, path, ca, agent, headers,
    }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== want) {
          reject(new Error(`${method} ${path}: ${res.statusCode}, want ${want}`));
          return;
        }
        resolve();
      });
    });
    req.on('socket', (s) => s.on('connect', () => ports.add(s.localPort)));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

(async () => {
  const plan = [
    [keepAlive, 'GET', '/hello', 200],
    [keepAlive, 'GET', '/hello', 200],
    [keepAlive, 'GET', '/hello', 200],
    [keepAlive, 'GET', '/items/7', 200],
    [keepAlive, 'GET', '/missing', 404],
    [keepAlive, 'POST', '/submit', 201],
    [false, 'GET', '/hello', 200],
    [false, 'GET', '/hello', 200],
    [false, 'GET', '/nope', 404],
    [false, 'POST', '/submit', 201],
  ];
  for (const [agent, method, path, want] of plan) {
    await request(agent, method, path, want);
  }
  keepAlive.destroy();
  console.log(`done ${plan.length}`);
  console.log(`ports ${ports.size}`);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
