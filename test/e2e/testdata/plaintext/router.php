<?php
// Router of `php -S` for the sockets collector's tests.
// Routes: /ok 200 "ok\n", /missing 404 "no\n", /fail 500 "err\n".
$routes = ['/ok' => [200, "ok\n"], '/missing' => [404, "no\n"], '/fail' => [500, "err\n"]];
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
[$code, $body] = $routes[$path] ?? [404, "no\n"];
http_response_code($code);
header('Content-Type: text/plain');
header('Content-Length: ' . strlen($body));
echo $body;
