// An event-loop server that calls another server while it serves (node
// http, one thread). /one: one upstream GET of /ok, then 200 "ok\n".
// /many?k=K: the request waits until K of them are in flight, then each
// makes its upstream GET, so that every client call starts while K server
// requests are in flight on the thread. Usage: node fanout.js PORT UPSTREAM_PORT
const http = require('http');
const [port, upstream] = process.argv.slice(2).map(Number);
const agent = new http.Agent({keepAlive: true});
let waiting = [];

function callUpstream(res) {
  http.get({host: '127.0.0.1', port: upstream, path: '/ok', agent}, (up) => {
    up.resume();
    up.on('end', () => {
      res.writeHead(200, {'Content-Length': 3});
      res.end('ok\n');
    });
  });
}

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/one') {
    callUpstream(res);
    return;
  }
  waiting.push(res);
  if (waiting.length >= Number(url.searchParams.get('k'))) {
    const all = waiting;
    waiting = [];
    all.forEach(callUpstream);
  }
}).listen(port, '127.0.0.1');
