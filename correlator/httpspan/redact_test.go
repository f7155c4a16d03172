package httpspan

import (
	"testing"

	"github.com/periscope-apm/periscope/internal/redact"
)

func TestRedactQuery(t *testing.T) {
	set := redact.NewNames(nil, DefaultSensitiveQueryParams)
	for _, tc := range []struct{ in, want string }{
		{"a=1&b=2", "a=1&b=2"},
		{"token=x", "token=REDACTED"},
		{"TOKEN=x&Access-Token=y&access_token=z", "TOKEN=REDACTED&Access-Token=REDACTED&access_token=REDACTED"},
		{"x_api_key=1&apiKey=2&client_secret=3&sessionid=4&session_id=5", "x_api_key=REDACTED&apiKey=REDACTED&client_secret=REDACTED&sessionid=REDACTED&session_id=REDACTED"},
		{"code=abc&zipcode=12345&country_code=fr", "code=REDACTED&zipcode=12345&country_code=REDACTED"},
		{"token", "token"},
		{"token=", "token=REDACTED"},
		{"to%6Ben=x", "to%6Ben=REDACTED"},
		{"pass+word=x&bad%zz=1", "pass+word=REDACTED&bad%zz=1"},
		{"sig=a=b", "sig=REDACTED"},
		{"&&key=1", "&&key=REDACTED"},
	} {
		if got := redactQuery(tc.in, set); got != tc.want {
			t.Errorf("redactQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
