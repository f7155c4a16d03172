package httpspan

import "testing"

func TestRoute(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"*", "/"},
		{"users", "/"},
		{"/", "/"},
		{"/users", "/users"},
		{"/users/", "/users/"},
		{"/users/123", "/users/{id}"},
		{"/users/123/orders/9f8e7a6b5c4d3e2f1a0b", "/users/{id}/orders/{id}"},
		{"/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"},
		{"/items/550E8400-E29B-41D4-A716-446655440000/edit", "/items/{id}/edit"},
		{"/objects/507f1f77bcf86cd799439011", "/objects/{id}"},               // ObjectID
		{"/commit/da39a3ee5e6b4b0d3255bfef95601890afd80709", "/commit/{id}"}, // SHA-1
		{"/c/9f8e7a6b", "/c/{id}"},                                           // short hash
		{"/t/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/t/{id}"},                         // ULID
		{"/s/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0", "/s/{id}"},           // JWT-like token
		{"/reports/2024-01-31", "/reports/{id}"},                             // date
		{"/pkg/1.2.3", "/pkg/{id}"},                                          // version
		{"/u/alice@example.com", "/u/{id}"},                                  // e-mail
		{"/users/user42", "/users/{id}"},                                     // mixed, many digits
		{"/api/v1/users", "/api/v1/users"},                                   // v1 stays
		{"/api/v2beta1/things", "/api/v2beta1/things"},                       // few digits
		{"/oauth2/authorize", "/oauth2/authorize"},                           // word with a digit
		{"/static/index.html", "/static/index.html"},                         // file name
		{"/deadbeef", "/deadbeef"},                                           // hex letters only, short
		{"/a//b", "/a//b"},                                                   // empty segment kept
		{"/x/12/34/", "/x/{id}/{id}/"},                                       // trailing slash kept
		{"/very-long-slug-without-digits-but-really-long-indeed", "/{id}"},   // 40+ chars
		{"/health", "/health"},
		{"/metrics", "/metrics"},
	} {
		if got := Route(tc.in); got != tc.want {
			t.Errorf("Route(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRouteNoAllocWhenUnchanged(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { Route("/api/v1/users/profile") })
	if allocs != 0 {
		t.Errorf("Route allocates %v times for an unchanged path", allocs)
	}
}

func TestRouter(t *testing.T) {
	r, err := NewRouter([]string{"/users/{id}/orders/{order}", "/static/*", "/health", "/", "/v1/*/items"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/users/alice/orders/x7", "/users/{id}/orders/{order}"},
		{"/users/alice/orders/x7/", "/users/{id}/orders/{order}"},
		{"/users/alice/orders", "/users/alice/orders"},                   // too short: heuristic
		{"/users/alice/orders/x7/lines", "/users/alice/orders/x7/lines"}, // too long
		{"/users//orders/x7", "/users//orders/x7"},                       // empty segment is not {id}
		{"/static/css/site.css", "/static/*"},
		{"/static/a", "/static/*"},
		{"/static", "/static"}, // "*" needs a segment
		{"/static/", "/static/"},
		{"/health", "/health"},
		{"/health/", "/health"},
		{"/", "/"},
		{"/v1/eu/items", "/v1/*/items"},
		{"/v2/123", "/v2/{id}"}, // no pattern: heuristic
		{"", "/"},
	} {
		if got := r.Route(tc.path); got != tc.want {
			t.Errorf("Route(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	var nilRouter *Router
	if got := nilRouter.Route("/a/123"); got != "/a/{id}" {
		t.Errorf("nil router: %q", got)
	}
}

func TestNewRouterErrors(t *testing.T) {
	for _, p := range []string{"", "users", "/a//b", "/a/{id", "/a/x*", "/a/{}"} {
		if _, err := NewRouter([]string{p}); err == nil {
			t.Errorf("NewRouter(%q) accepted", p)
		}
	}
}
