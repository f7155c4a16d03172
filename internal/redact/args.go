package redact

import (
	"path/filepath"
	"strings"
)

// DefaultArgNames are the names whose values are redacted on command lines
// by default: flags (--password=x, --api-key x), NAME=value arguments
// (PGPASSWORD=x) and NAME=value pairs inside an argument (DSNs).
var DefaultArgNames = []string{
	"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey",
	"auth", "credential", "credentials", "cookie", "session", "private",
}

// shortSecretFlags are the one-letter flags that take a password, by
// program: mysql -pSECRET (glued only: a lone -p prompts for it), sshpass
// -p SECRET, redis-cli -a SECRET.
var shortSecretFlags = []struct {
	prefix string // of the program's base name
	shortFlag
}{
	{"mysql", shortFlag{'p', true}},
	{"mariadb", shortFlag{'p', true}},
	{"sshpass", shortFlag{'p', false}},
	{"redis-cli", shortFlag{'a', false}},
	{"valkey-cli", shortFlag{'a', false}},
}

// shortFlag is a one-letter flag that takes a password.
type shortFlag struct {
	letter byte
	glued  bool // only the glued form (-pSECRET) carries the value
}

// ArgsConfig configures an Args redactor.
type ArgsConfig struct {
	// Names are the sensitive names; empty means DefaultArgNames.
	Names []string
	// Headers are header names redacted after -H/--header in addition to
	// the ones always redacted and those Names match.
	Headers []string
}

// Args redacts command lines. It is safe for concurrent use.
type Args struct {
	names   Names
	headers map[string]bool
}

// NewArgs returns a command-line redactor configured by cfg.
func NewArgs(cfg ArgsConfig) *Args {
	return &Args{names: NewNames(cfg.Names, DefaultArgNames), headers: HeaderSet(cfg.Headers)}
}

// argState is what an argument means given the one before it.
type argState int

const (
	plainArg  argState = iota
	secretArg          // the value of a sensitive flag
	userArg            // the value of -u/--user: user:password
)

// Redact returns argv with credentials replaced by REDACTED: the values of
// sensitive flags (--password=x, --password x, mysql -px), the values of
// sensitive headers ("Authorization: x" after curl's -H), URL userinfo and query values,
// NAME=value for sensitive names, and Bearer/Basic credentials. argv[0] is
// redacted as text (a rewritten process title may hold a URL). argv is not
// modified.
func (a *Args) Redact(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	out := make([]string, len(argv))
	out[0] = a.Text(argv[0])
	short := a.shortFlag(argv[0])
	state := plainArg
	for i := 1; i < len(argv); i++ {
		arg := argv[i]
		switch prev := state; {
		case prev == secretArg && !strings.HasPrefix(arg, "--"):
			// The value, even one that looks like a flag. If it is one
			// (a flag name that only looked sensitive, curl -pAss -u
			// user:x), what it would take is treated as such too.
			out[i], state = Redacted, plainArg
			if len(arg) > 1 && arg[0] == '-' {
				_, state = a.flag(arg, short)
			}
		case prev == userArg && !strings.HasPrefix(arg, "-"):
			// user:password, else any argument (env -U NAME=value).
			out[i], state = a.Text(userPass(arg)), plainArg
		case len(arg) > 1 && arg[0] == '-' && arg != "--":
			out[i], state = a.flag(arg, short)
		default:
			out[i], state = a.Text(arg), plainArg
		}
	}
	return out
}

// shortFlag returns the one-letter password flag of the program argv0
// runs, if it has one.
func (a *Args) shortFlag(argv0 string) (f shortFlag) {
	base := filepath.Base(argv0)
	for _, s := range shortSecretFlags {
		if strings.HasPrefix(base, s.prefix) {
			return s.shortFlag
		}
	}
	return shortFlag{}
}

// flag redacts one flag argument and says what the next argument is.
func (a *Args) flag(arg string, short shortFlag) (string, argState) {
	dashes := 1
	if arg[1] == '-' {
		dashes = 2
	}
	body := arg[dashes:]
	name, value, hasValue := strings.Cut(body, "=")
	prefix := arg[:dashes+len(name)] // "--name"
	switch {
	case dashes == 1 && len(body) > 1 && body[0] == 'H' && strings.Contains(body, ":"):
		return "-H" + a.Text(body[1:]), plainArg // curl -H'Name: value'
	case dashes == 1 && short.letter != 0 && len(body) > 0 && body[0] == short.letter:
		if len(body) > 1 {
			return arg[:2] + Redacted, plainArg
		}
		if short.glued {
			return arg, plainArg
		}
		return arg, secretArg
	case a.names.Match(name):
		if hasValue {
			return prefix + "=" + Redacted, plainArg
		}
		return arg, secretArg
	case name == "u" && dashes == 1 || name == "user" || name == "proxy-user" || name == "U" && dashes == 1:
		if hasValue {
			return prefix + "=" + userPass(value), plainArg
		}
		return arg, userArg
	case hasValue:
		return prefix + "=" + a.Text(value), plainArg
	}
	return a.Text(arg), plainArg
}

// userPass redacts the password of "user:password".
func userPass(s string) string {
	if user, _, ok := strings.Cut(s, ":"); ok {
		return user + ":" + Redacted
	}
	return s
}

// sensitiveHeader reports whether the value of a header is redacted: one
// always redacted, a configured one, or a sensitive name (X-Api-Key).
func (a *Args) sensitiveHeader(name string) bool {
	return name != "" && (a.headers[strings.ToLower(name)] || a.names.Match(name))
}
