package systemd

import "testing"

func TestTemplateNames(t *testing.T) {
	for _, tt := range []struct {
		unit, template string
		instance       bool
	}{
		{"board-web@8123.service", "board-web@.service", true},
		{"board-web@.service", "board-web@.service", false},
		{"board-backend.service", "board-backend.service", false},
	} {
		if got := template(tt.unit); got != tt.template {
			t.Errorf("template(%q) = %q, want %q", tt.unit, got, tt.template)
		}
		if got := isInstance(tt.unit); got != tt.instance {
			t.Errorf("isInstance(%q) = %v", tt.unit, got)
		}
	}
}
