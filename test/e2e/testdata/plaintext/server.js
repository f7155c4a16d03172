// Plain HTTP/1.1 server for the sockets collector's tests (node http).
// Routes: /ok 200 "ok\n", /missing 404 "no\n", /fail 500 "err\n",
// /big 200 with 10 MiB. Usage: node server.js PORT
const http = require('http');
const routes = {'/ok': [200, 'ok\n'], '/missing': [404, 'no\n'], '/fail': [500, 'err\n']};
const big = Buffer.alloc(10 << 20, 'x');
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url === '/big') {
      res.writeHead(200, {'Content-Length': big.length});
      res.end(big);
      return;
    }
    const [code, body] = routes[req.url] || [404, 'no\n'];
    res.writeHead(code, {'Content-Length': Buffer.byteLength(body)});
    res.end(body);
  });
}).listen(Number(process.argv[2]), '127.0.0.1');
