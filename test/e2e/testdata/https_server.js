// HTTPS server for the end-to-end tests: node's built-in https module
// (OpenSSL linked into the node executable).
//
// usage: node https_server.js CERT KEY
//
// Listens on a free 127.0.0.1 port and prints "listening PORT". Routes
// (HTTP/1.1, keep-alive, every answer has a Content-Length):
//   GET  /hello, /items/N   200 "hello\n"
//   POST /submit            201 "got N bytes\n"
//   anything else           404 "not found\n"
'use strict';
const fs = require('fs');
const https = require('https');

const server = https.createServer({
  cert: fs.readFileSync(process.argv[2]),
  key: fs.readFileSync(process.argv[3]),
}, (req, res) => {
  let size = 0;
  req.on('data', (chunk) => { size += chunk.length; });
  req.on('end', () => {
    let code = 404;
    let body = 'not found\n';
    if (req.method === 'GET' && (req.url === '/hello' || req.url.startsWith('/items/'))) {
      code = 200;
      body = 'hello\n';
    } else if (req.method === 'POST' && req.url === '/submit') {
      code = 201;
      body = `got ${size} bytes\n`;
    }
    res.writeHead(code, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
