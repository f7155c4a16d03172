package discovery

import "testing"

func TestSelector(t *testing.T) {
	tests := []struct {
		name string
		sel  Selector
		exe  string
		want bool
	}{
		{"empty selects all", Selector{}, "/usr/bin/curl", true},
		{"base name", Selector{Include: []string{"nginx"}}, "/usr/sbin/nginx", true},
		{"base name glob", Selector{Include: []string{"py*"}}, "/usr/bin/python3.11", true},
		{"base name miss", Selector{Include: []string{"nginx"}}, "/usr/bin/curl", false},
		{"full path", Selector{Include: []string{"/usr/sbin/*"}}, "/usr/sbin/nginx", true},
		{"full path miss", Selector{Include: []string{"/usr/sbin/*"}}, "/usr/bin/nginx", false},
		{"exclude only", Selector{Exclude: []string{"wrk"}}, "/usr/bin/wrk", false},
		{"exclude only other", Selector{Exclude: []string{"wrk"}}, "/usr/sbin/nginx", true},
		{"exclude wins", Selector{Include: []string{"*"}, Exclude: []string{"curl"}}, "/usr/bin/curl", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sel.Match(tt.exe); got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.exe, got, tt.want)
			}
		})
	}
}

func TestSelectorValidate(t *testing.T) {
	if err := (Selector{Include: []string{"[a-"}}).Validate(); err == nil {
		t.Error("malformed pattern: want an error")
	}
	if err := (Selector{Exclude: []string{""}}).Validate(); err == nil {
		t.Error("empty pattern: want an error")
	}
	if err := (Selector{Include: []string{"nginx", "/usr/bin/*"}}).Validate(); err != nil {
		t.Errorf("good patterns: %v", err)
	}
}
