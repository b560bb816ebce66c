package agent

import (
	"fmt"
	"os"
	"strings"

	"github.com/slipway-dev/slipway/internal/config"
)

// Secrets are the agent's API token and webhook secret.
type Secrets struct {
	Token   []byte
	Webhook []byte
}

// LoadSecrets reads the API token (api.token_env or api.token_file) and the
// webhook secret. The agent refuses to start without a token, with a token
// file others can read, or with a webhook and no secret: each error names
// the setting to fix.
func LoadSecrets(cfg *config.Config) (Secrets, error) {
	var s Secrets
	switch {
	case cfg.API.TokenFile != "":
		info, err := os.Stat(cfg.API.TokenFile)
		if err != nil {
			return s, fmt.Errorf("api.token_file: %w", err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return s, fmt.Errorf("api.token_file: %s has mode %04o; it must be readable by its owner only (chmod 0600 %s)",
				cfg.API.TokenFile, info.Mode().Perm(), cfg.API.TokenFile)
		}
		b, err := os.ReadFile(cfg.API.TokenFile)
		if err != nil {
			return s, fmt.Errorf("api.token_file: %w", err)
		}
		s.Token = []byte(strings.TrimSpace(string(b)))
		if len(s.Token) == 0 {
			return s, fmt.Errorf("api.token_file: %s is empty", cfg.API.TokenFile)
		}
	case cfg.API.TokenEnv != "":
		v, _ := cfg.LookupEnv(cfg.API.TokenEnv)
		if strings.TrimSpace(v) == "" {
			return s, fmt.Errorf("api.token_env: %s is unset or empty; the agent does not serve its API without a token", cfg.API.TokenEnv)
		}
		s.Token = []byte(strings.TrimSpace(v))
	default:
		return s, fmt.Errorf("api.token_env or api.token_file must be set in %s; the agent does not serve its API without a token", cfg.Path)
	}
	if len(s.Token) < 16 {
		return s, fmt.Errorf("the API token must be at least 16 characters (api.token_env/api.token_file)")
	}
	if wh := cfg.Triggers.Webhook; wh != nil {
		v, _ := cfg.LookupEnv(wh.SecretEnv)
		if wh.SecretEnv == "" || strings.TrimSpace(v) == "" {
			return s, fmt.Errorf("triggers.webhook.secret_env: %q is unset or empty; a webhook needs its secret", wh.SecretEnv)
		}
		s.Webhook = []byte(strings.TrimSpace(v))
	}
	return s, nil
}
