package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-dev/slipway/internal/config"
)

// The API token is required; the viewer token is optional, and when given
// it must be a token of its own, of 16 characters at least, in a file only
// its owner reads.
func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const token, viewer = "api-token-0123456789", "viewer-token-0123456789"
	env := map[string]map[string]string{"agent": {"API_TOKEN": token, "VIEWER": viewer, "SHORT": "short"}}
	for _, tt := range []struct {
		name    string
		api     config.API
		viewer  string // the viewer token read, when no error
		wantErr string
	}{
		{name: "no viewer", api: config.API{TokenEnv: "API_TOKEN"}},
		{name: "viewer from the environment", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenEnv: "VIEWER"}, viewer: viewer},
		{name: "viewer from a file", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenFile: file("viewer", viewer+"\n", 0o600)}, viewer: viewer},
		{name: "viewer file others read", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenFile: file("open", viewer, 0o644)}, wantErr: "api.viewer_token_file: " + dir + "/open has mode 0644"},
		{name: "viewer is the API token", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenEnv: "API_TOKEN"}, wantErr: "the viewer token is the API token"},
		{name: "short viewer", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenEnv: "SHORT"}, wantErr: "api.viewer_token must be at least 16 characters"},
		{name: "viewer unset", api: config.API{TokenEnv: "API_TOKEN", ViewerTokenEnv: "NOPE_UNSET"}, wantErr: "api.viewer_token_env: NOPE_UNSET is unset or empty"},
		{name: "no API token", api: config.API{ViewerTokenEnv: "VIEWER"}, wantErr: "api.token_env or api.token_file must be set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Path: "slipway.yml", API: tt.api, Env: env}
			s, err := LoadSecrets(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Token) != token || string(s.Viewer) != tt.viewer {
				t.Fatalf("token %q, viewer %q; want %q, %q", s.Token, s.Viewer, token, tt.viewer)
			}
		})
	}
}
