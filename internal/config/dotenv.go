package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// maxEnvFileSize bounds what ReadEnvFile reads; env files are small.
const maxEnvFileSize = 1 << 20

// envKeyPattern is what an environment variable name may look like.
var envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ReadEnvFile reads a dotenv file: one KEY=VALUE a line, blank lines and
// # comments ignored, an optional "export " prefix. A value is either
//   - 'single quoted': taken literally,
//   - "double quoted": with the escapes \n, \t, \r, \" and \\,
//   - unquoted: trimmed, and cut at a " #" comment.
//
// Values are not expanded. A later line wins over an earlier one with the same
// key. A malformed line is an error "path:line: message".
func ReadEnvFile(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read env file %s: not a regular file", path)
	}
	if fi.Size() > maxEnvFileSize {
		return nil, fmt.Errorf("read env file %s: larger than %d bytes", path, maxEnvFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	return parseEnv(path, string(data))
}

// parseEnv parses the text of a dotenv file named name (for errors).
func parseEnv(name, text string) (map[string]string, error) {
	text = strings.TrimPrefix(text, "\uFEFF")
	vars := make(map[string]string)
	for i, line := range strings.Split(text, "\n") {
		key, value, ok, err := parseEnvLine(strings.TrimSuffix(line, "\r"))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		if ok {
			vars[key] = value
		}
	}
	return vars, nil
}

// parseEnvLine parses one line; ok is false for blank and comment lines.
func parseEnvLine(line string) (key, value string, ok bool, err error) {
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", "", false, nil
	}
	if rest, found := strings.CutPrefix(line, "export"); found && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
		line = strings.TrimLeft(rest, " \t")
	}
	key, raw, found := strings.Cut(line, "=")
	if !found {
		return "", "", false, errors.New("expected KEY=VALUE")
	}
	key = strings.TrimRight(key, " \t")
	if !envKeyPattern.MatchString(key) {
		return "", "", false, fmt.Errorf("%q is not a valid variable name (letters, digits and _, not starting with a digit)", key)
	}
	if strings.ContainsRune(raw, 0) {
		return "", "", false, fmt.Errorf("%s: value contains a NUL byte", key)
	}
	value, err = parseEnvValue(raw)
	if err != nil {
		return "", "", false, fmt.Errorf("%s: %w", key, err)
	}
	return key, value, true, nil
}

// parseEnvValue parses what follows the "=".
func parseEnvValue(raw string) (string, error) {
	v := strings.TrimLeft(raw, " \t")
	if v == "" {
		return "", nil
	}
	switch v[0] {
	case '\'':
		end := strings.IndexByte(v[1:], '\'')
		if end < 0 {
			return "", errors.New("missing closing single quote")
		}
		return v[1 : end+1], trailing(v[end+2:])
	case '"':
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"':
				return b.String(), trailing(v[i+1:])
			case c == '\\' && i+1 < len(v):
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case '"', '\\':
					b.WriteByte(v[i])
				default: // unknown escapes stay as written
					b.WriteByte('\\')
					b.WriteByte(v[i])
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", errors.New("missing closing double quote")
	}
	// Unquoted: a # preceded by a blank starts a comment.
	for i := 1; i < len(raw); i++ {
		if raw[i] == '#' && (raw[i-1] == ' ' || raw[i-1] == '\t') {
			raw = raw[:i]
			break
		}
	}
	return strings.Trim(raw, " \t"), nil
}

// trailing checks what follows a closing quote: nothing but blanks and a
// comment.
func trailing(rest string) error {
	rest = strings.TrimLeft(rest, " \t")
	if rest == "" || rest[0] == '#' {
		return nil
	}
	return fmt.Errorf("unexpected %q after the closing quote", rest)
}

// ModeError is an env file, or the env directory, that others than its
// owner may read or write: it holds secrets.
type ModeError struct {
	Path string
	Mode os.FileMode // its permission bits
	Dir  bool
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%s has mode %04o; secrets must not be readable by others", e.Path, e.Mode)
}

// Fix is the command that mends it.
func (e *ModeError) Fix() string {
	if e.Dir {
		return "chmod 0700 " + e.Path
	}
	return "chmod 0600 " + e.Path
}

// EnvModeErrors are the env dir and env files of c whose modes let others
// read them (each a *ModeError, with its fix). Missing ones are not
// errors here: the deploy's verify-env names them.
func (c *Config) EnvModeErrors() []error {
	if len(c.EnvFiles) == 0 {
		return nil
	}
	var errs []error
	paths := []string{filepath.Join(c.Root, "env")}
	for _, name := range slices.Sorted(maps.Keys(c.EnvFiles)) {
		if p := c.EnvFilePath(name); !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if info, err := os.Stat(p); err == nil {
			if err := CheckPrivate(p, info); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// CheckPrivate returns a *ModeError when the file or directory described
// by info, at path, has a permission bit for its group or others.
func CheckPrivate(path string, info os.FileInfo) error {
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return &ModeError{Path: path, Mode: perm, Dir: info.IsDir()}
	}
	return nil
}
