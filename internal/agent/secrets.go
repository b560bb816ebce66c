package agent

import (
	"fmt"
	"os"
	"strings"

	"github.com/slipway-dev/slipway/internal/config"
)

// Secrets are the agent's API token, the dashboard's viewer token (none
// when not set) and the webhook secret.
type Secrets struct {
	Token   []byte
	Viewer  []byte
	Webhook []byte
}

// LoadSecrets reads the API token (api.token_env or api.token_file), the
// viewer token (api.viewer_token_env or api.viewer_token_file, optional)
// and the webhook secret. The agent refuses to start without a token, with
// a token file others can read, with a viewer token equal to the API
// token, or with a webhook and no secret: each error names the setting to
// fix.
func LoadSecrets(cfg *config.Config) (Secrets, error) {
	var s Secrets
	var err error
	s.Token, err = readToken(cfg, "api.token", cfg.API.TokenFile, cfg.API.TokenEnv)
	if err != nil {
		return s, err
	}
	if s.Token == nil {
		return s, fmt.Errorf("api.token_env or api.token_file must be set in %s; the agent does not serve its API without a token", cfg.Path)
	}
	if s.Viewer, err = readToken(cfg, "api.viewer_token", cfg.API.ViewerTokenFile, cfg.API.ViewerTokenEnv); err != nil {
		return s, err
	}
	if s.Viewer != nil && string(s.Viewer) == string(s.Token) {
		return s, fmt.Errorf("api.viewer_token: the viewer token is the API token; give viewers a token of their own")
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

// readToken reads a token from file (readable by its owner only) or else
// the variable env names; nil when neither is set. what is the keys'
// prefix, for the errors.
func readToken(cfg *config.Config, what, file, env string) ([]byte, error) {
	var tok []byte
	switch {
	case file != "":
		info, err := os.Stat(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", what, err)
		}
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s_file: %s has mode %04o; it must be readable by its owner only (chmod 0600 %s)",
				what, file, info.Mode().Perm(), file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", what, err)
		}
		tok = []byte(strings.TrimSpace(string(b)))
		if len(tok) == 0 {
			return nil, fmt.Errorf("%s_file: %s is empty", what, file)
		}
	case env != "":
		v, _ := cfg.LookupEnv(env)
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%s_env: %s is unset or empty", what, env)
		}
		tok = []byte(strings.TrimSpace(v))
	default:
		return nil, nil
	}
	if len(tok) < 16 {
		return nil, fmt.Errorf("%s must be at least 16 characters (%s_env/%s_file)", what, what, what)
	}
	return tok, nil
}
