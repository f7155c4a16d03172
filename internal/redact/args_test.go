package redact

import (
	"slices"
	"strings"
	"testing"
)

func TestRedactArgs(t *testing.T) {
	a := NewArgs(ArgsConfig{})
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"nothing secret", []string{"nginx", "-g", "daemon off;", "-c", "/etc/nginx.conf"}, nil},
		{"flag=value", []string{"app", "--password=hunter2", "--port=80"}, []string{"app", "--password=REDACTED", "--port=80"}},
		{"flag value", []string{"app", "--password", "hunter2", "-v"}, []string{"app", "--password", "REDACTED", "-v"}},
		{"single dash", []string{"app", "-token", "abc", "-x"}, []string{"app", "-token", "REDACTED", "-x"}},
		{"compound name", []string{"app", "--api-key=abc", "--client_secret", "def", "--dbPassword=ghi"},
			[]string{"app", "--api-key=REDACTED", "--client_secret", "REDACTED", "--dbPassword=REDACTED"}},
		{"glued word", []string{"app", "--DBPASSWORD=abc", "--accesstoken", "x"}, []string{"app", "--DBPASSWORD=REDACTED", "--accesstoken", "REDACTED"}},
		{"sensitive flag then flag", []string{"app", "--no-auth", "--verbose"}, nil},
		{"value of -U that is not user:password", []string{"env", "-U", "DB_PASSWORD=s3", "app"},
			[]string{"env", "-U", "DB_PASSWORD=REDACTED", "app"}},
		{"value that is a flag taking a credential", []string{"curl", "-pAss", "-u", "user:s3", "https://h/"},
			[]string{"curl", "-pAss", "REDACTED", "user:REDACTED", "https://h/"}},
		{"java property", []string{"java", "-Djavax.net.ssl.keyStorePassword=changeit", "-Xmx1g", "-jar", "a.jar"},
			[]string{"java", "-Djavax.net.ssl.keyStorePassword=REDACTED", "-Xmx1g", "-jar", "a.jar"}},
		{"not sensitive", []string{"app", "--monkey=1", "--author", "me", "--keyboard=us"}, nil},
		{"env-style", []string{"env", "PGPASSWORD=s3", "AWS_SECRET_ACCESS_KEY=abc", "PATH=/bin", "psql"},
			[]string{"env", "PGPASSWORD=REDACTED", "AWS_SECRET_ACCESS_KEY=REDACTED", "PATH=/bin", "psql"}},
		{"curl headers", []string{"curl", "-H", "Authorization: Bearer S3", "-H", "Accept: */*", "--header", "Cookie: a=b; c=d", "-H", "X-Api-Key:k1", "https://h/"},
			[]string{"curl", "-H", "Authorization: REDACTED", "-H", "Accept: */*", "--header", "Cookie: REDACTED", "-H", "X-Api-Key:REDACTED", "https://h/"}},
		{"header glued and =", []string{"curl", "-HAuthorization: Basic dXNlcjpw", "--header=Proxy-Authorization: x"},
			[]string{"curl", "-HAuthorization: REDACTED", "--header=Proxy-Authorization: REDACTED"}},
		{"header with token in value", []string{"curl", "-H", "X-Trace: token=abc"}, []string{"curl", "-H", "X-Trace: token=REDACTED"}},
		{"url userinfo and query", []string{"psql", "postgres://user:pass@db:5432/app?sslpassword=x&sslmode=require"},
			[]string{"psql", "postgres://REDACTED@db:5432/app?sslpassword=REDACTED&sslmode=REDACTED"}},
		{"url in flag value", []string{"app", "--db=mysql://root:pw@localhost/x"}, []string{"app", "--db=mysql://REDACTED@localhost/x"}},
		{"url fragment", []string{"open", "https://h/cb#access_token=abc&state=1"}, []string{"open", "https://h/cb#access_token=REDACTED&state=REDACTED"}},
		{"url bare query", []string{"curl", "https://h/?abc"}, []string{"curl", "https://h/?REDACTED"}},
		{"url without secrets", []string{"curl", "https://example.com/a/b"}, nil},
		{"url at in path", []string{"curl", "https://h/a@b"}, nil},
		{"mysql glued", []string{"mysql", "-uroot", "-pS3CRET", "db"}, []string{"mysql", "-uroot", "-pREDACTED", "db"}},
		{"mysql prompt", []string{"/usr/bin/mysql", "-p", "db"}, nil},
		{"mysqldump", []string{"mysqldump", "-psecret"}, []string{"mysqldump", "-pREDACTED"}},
		{"sshpass", []string{"sshpass", "-p", "pw", "ssh", "host"}, []string{"sshpass", "-p", "REDACTED", "ssh", "host"}},
		{"ssh port", []string{"ssh", "-p22", "-p", "22"}, nil},
		{"redis-cli", []string{"redis-cli", "-a", "pw", "-p", "6379"}, []string{"redis-cli", "-a", "REDACTED", "-p", "6379"}},
		{"curl user", []string{"curl", "-u", "alice:pw", "--user=bob:pw2", "--proxy-user", "c:d"},
			[]string{"curl", "-u", "alice:REDACTED", "--user=bob:REDACTED", "--proxy-user", "c:REDACTED"}},
		{"user without password", []string{"curl", "-u", "alice"}, nil},
		{"sh -c", []string{"sh", "-c", "curl -H 'Authorization: Bearer abc' https://u:p@h/?t=1 && mysql --password xyz"},
			[]string{"sh", "-c", "curl -H 'Authorization: REDACTED' https://REDACTED@h/?t=REDACTED && mysql --password REDACTED"}},
		{"bearer alone", []string{"app", "Bearer abc.def"}, []string{"app", "Bearer REDACTED"}},
		{"dsn", []string{"psql", "host=db user=app password='a b' dbname=x"}, []string{"psql", "host=db user=app password='REDACTED' dbname=x"}},
		{"connection string", []string{"app", "Server=db;Password=pw;Database=x"}, []string{"app", "Server=db;Password=REDACTED;Database=x"}},
		{"httpie", []string{"http", "h/", "Authorization:Bearer x", "token==abc"}, []string{"http", "h/", "Authorization:REDACTED", "token==REDACTED"}},
		{"process title url", []string{"worker amqp://guest:guest@mq/"}, []string{"worker amqp://REDACTED@mq/"}},
		{"double dash", []string{"app", "--", "--password"}, []string{"app", "--", "--password"}},
		{"last flag", []string{"app", "--password"}, nil},
		{"empty args", []string{"app", "", "-", "="}, nil},
		{"redacted stays", []string{"app", "--password=REDACTED"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			in := slices.Clone(tt.in)
			got := a.Redact(in)
			if !slices.Equal(got, want) {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("Redact modified its argument: %q", in)
			}
			if again := a.Redact(got); !slices.Equal(again, got) {
				t.Errorf("Redact is not idempotent: %q → %q", got, again)
			}
		})
	}
}

func TestRedactArgsConfig(t *testing.T) {
	a := NewArgs(ArgsConfig{Names: []string{"pin"}, Headers: []string{"X-Private"}})
	got := a.Redact([]string{"app", "--pin=1234", "--password=x", "-H", "X-Private: v", "-H", "Cookie: c"})
	want := []string{"app", "--pin=REDACTED", "--password=x", "-H", "X-Private: REDACTED", "-H", "Cookie: REDACTED"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := a.Redact(nil); got != nil {
		t.Errorf("Redact(nil) = %q", got)
	}
}

func TestNamesMatch(t *testing.T) {
	n := NewNames(nil, DefaultArgNames)
	for _, name := range []string{"password", "PASSWORD", "api_key", "apiKey", "X-Api-Key", "client-secret", "keyStorePassword",
		"MYSQL_PWD", "sessionid", "accesstoken", "GITHUB_TOKEN", "x.auth.header", "ssl-key"} {
		if !n.Match(name) {
			t.Errorf("Match(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"", "monkey", "author", "keyboard", "port", "user", "host", "verbose", "-", "passage"} {
		if n.Match(name) {
			t.Errorf("Match(%q) = true, want false", name)
		}
	}
	if (Names{}).Match("password") {
		t.Error("the zero Names matches")
	}
}

func TestHeaderSet(t *testing.T) {
	set := HeaderSet([]string{" X-Token ", ""})
	for _, h := range []string{"authorization", "cookie", "set-cookie", "proxy-authorization", "x-token"} {
		if !set[h] {
			t.Errorf("%s not in the set", h)
		}
	}
	if len(set) != 5 || !strings.EqualFold(AlwaysHeaders()[0], "authorization") {
		t.Errorf("set %v, always %v", set, AlwaysHeaders())
	}
}
