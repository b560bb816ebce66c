package run

import (
	"os"
	"strings"
)

// DefaultPath is the PATH given to commands: the caller's PATH when set
// (operators rely on their toolchains being found), else the usual system one.
func DefaultPath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return "/"
}

// shellChars are the characters that make a command need /bin/sh.
const shellChars = "|&;<>()$`\\\"'*?[]#~=%\n"

// NeedsShell reports whether command uses shell syntax.
func NeedsShell(command string) bool {
	return strings.ContainsAny(command, shellChars)
}

// Argv turns a command as written in slipway.yml into an argv: split on
// spaces when it is a plain command, else handed to /bin/sh -c.
func Argv(command string) []string {
	if NeedsShell(command) {
		return []string{"/bin/sh", "-c", command}
	}
	return strings.Fields(command)
}

// MergeEnv returns base with the pairs of over applied on top, in a stable order.
func MergeEnv(base []string, over map[string]string, keys []string) []string {
	out := make([]string, 0, len(base)+len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		seen[k] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			out = append(out, kv)
		}
	}
	for _, k := range keys {
		out = append(out, k+"="+over[k])
	}
	return out
}
