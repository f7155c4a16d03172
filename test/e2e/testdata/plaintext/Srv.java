// Plain HTTP/1.1 server and client for the sockets collector's tests.
// java Srv.java serve PORT: com.sun.net.httpserver with /ok 200 "ok\n",
// /missing 404 "no\n", /fail 500 "err\n".
// java Srv.java get URL...: java.net.http.HttpClient GETs each URL on one
// client (keep-alive), printing the status codes.
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;

public class Srv {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("serve")) {
            serve(Integer.parseInt(args[1]));
            return;
        }
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        for (int i = 1; i < args.length; i++) {
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(args[i])).build(),
                    HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode());
        }
    }

    static void serve(int port) throws Exception {
        Map<String, Object[]> routes = Map.of(
                "/ok", new Object[] {200, "ok\n"},
                "/missing", new Object[] {404, "no\n"},
                "/fail", new Object[] {500, "err\n"});
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        s.createContext("/", ex -> {
            Object[] r = routes.getOrDefault(ex.getRequestURI().getPath(), new Object[] {404, "no\n"});
            byte[] body = ((String) r[1]).getBytes();
            ex.getRequestBody().readAllBytes();
            ex.sendResponseHeaders((Integer) r[0], body.length);
            ex.getResponseBody().write(body);
            ex.close();
        });
        s.start();
        System.out.println("listening");
    }
}
