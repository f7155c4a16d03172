# Plain HTTP/1.1 server for the sockets collector's tests (WEBrick).
# Routes: /ok 200 "ok\n", /missing 404 "no\n", /fail 500 "err\n".
# Usage: ruby server.rb PORT
require 'webrick'
routes = {'/ok' => [200, "ok\n"], '/missing' => [404, "no\n"], '/fail' => [500, "err\n"]}
log = WEBrick::Log.new($stderr, WEBrick::Log::WARN)
srv = WEBrick::HTTPServer.new(BindAddress: '127.0.0.1', Port: ARGV[0].to_i, Logger: log, AccessLog: [])
srv.mount_proc('/') do |req, res|
  code, body = routes.fetch(req.path, [404, "no\n"])
  res.status = code
  res.body = body
  res['Content-Type'] = 'text/plain'
end
trap('TERM') { srv.shutdown }
srv.start
