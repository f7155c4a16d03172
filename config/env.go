package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts the environment variable of every option:
// PERISCOPE_<KEY>, KEY being the dotted YAML key in upper case with dots as
// underscores (tcp.max_peers: PERISCOPE_TCP_MAX_PEERS).
const EnvPrefix = "PERISCOPE_"

// reservedEnv are PERISCOPE_* variables that are not agent options: the
// build's tool cache and the end-to-end tests' settings. Any other unknown
// PERISCOPE_* variable is an error, like an unknown key in the file.
var reservedEnv = []string{"PERISCOPE_CACHE", "PERISCOPE_E2E_"}

// Option is one configuration key.
type Option struct {
	Key     string // dotted YAML key, "tcp.max_peers"
	Env     string // environment variable, "PERISCOPE_TCP_MAX_PEERS"
	Flag    string // command-line flag without dashes, "" when there is none
	Type    string // "string", "bool", "int", "duration" or "list"
	Default string // the default, as written in YAML

	index []int // field index path in Config
}

// flags maps the command-line flags to the keys they set.
var flags = map[string]string{
	"console":       "console",
	"metrics-addr":  "metrics_addr",
	"log-level":     "log_level",
	"log-format":    "log_format",
	"include-exe":   "processes.include_exe",
	"exclude-exe":   "processes.exclude_exe",
	"route-pattern": "metrics.route_patterns",
	"kubeconfig":    "kubernetes.kubeconfig",
	"node-name":     "kubernetes.node_name",
}

var durationType = reflect.TypeOf(time.Duration(0))

// Options lists every configuration key, in the order of the Config struct.
func Options() []Option {
	flagOf := make(map[string]string, len(flags))
	for f, k := range flags {
		flagOf[k] = f
	}
	var out []Option
	def := reflect.ValueOf(Default())
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(f.Type, key+".", idx)
				continue
			}
			o := Option{
				Key:   key,
				Env:   EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_")),
				Flag:  flagOf[key],
				Type:  typeName(f.Type),
				index: idx,
			}
			o.Default = formatValue(def.FieldByIndex(idx))
			out = append(out, o)
		}
	}
	walk(def.Type(), "", nil)
	return out
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.Int:
		return "int"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "list"
	}
	panic("config: no environment syntax for a field of type " + t.String())
}

// formatValue writes v as it would appear in YAML.
func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		return strconv.Quote(v.String())
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = strconv.Quote(v.Index(i).String())
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// setValue parses s, in the environment syntax of the option's type, into
// the option's field of c.
func (o Option) setValue(c *Config, s string) error {
	f := reflect.ValueOf(c).Elem().FieldByIndex(o.index)
	switch o.Type {
	case "duration":
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (such as 30s or 2m)", s)
		}
		f.SetInt(int64(d))
	case "string":
		f.SetString(s)
	case "bool":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		f.SetBool(b)
	case "int":
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.SetInt(int64(n))
	case "list":
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.Set(reflect.ValueOf(items))
	}
	return nil
}

// applyEnv sets the options whose PERISCOPE_* variable is in environ
// ("KEY=value" entries). Lists are comma-separated. An unknown PERISCOPE_*
// variable or a bad value is an error naming the variable and its key.
func (c *Config) applyEnv(environ []string) error {
	byEnv := make(map[string]Option)
	for _, o := range Options() {
		byEnv[o.Env] = o
	}
	var names []string
	values := make(map[string]string)
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		names = append(names, name)
		values[name] = value
	}
	sort.Strings(names) // report errors in a stable order
	for _, name := range names {
		o, ok := byEnv[name]
		if !ok {
			if isReservedEnv(name) {
				continue
			}
			return fmt.Errorf("environment variable %s: unknown option (docs/configuration.md lists them)", name)
		}
		if err := o.setValue(c, values[name]); err != nil {
			return fmt.Errorf("%s (environment variable %s): %w", o.Key, name, err)
		}
	}
	return nil
}

func isReservedEnv(name string) bool {
	for _, r := range reservedEnv {
		if name == r || (strings.HasSuffix(r, "_") && strings.HasPrefix(name, r)) {
			return true
		}
	}
	return false
}
