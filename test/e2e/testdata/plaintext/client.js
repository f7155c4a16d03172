// Plain HTTP/1.1 client for the sockets collector's tests (node http):
// GETs each URL in turn on one keep-alive agent. Usage: node client.js URL...
const http = require('http');
const agent = new http.Agent({keepAlive: true, maxSockets: 1});
(async () => {
  for (const url of process.argv.slice(2)) {
    await new Promise((resolve, reject) => {
      http.get(url, {agent}, (res) => {
        res.resume();
        res.on('end', () => { console.log(res.statusCode); resolve(); });
      }).on('error', reject);
    });
  }
  agent.destroy();
})();
