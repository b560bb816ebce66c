package unit

import (
	"fmt"
	"sort"
	"strings"
)

// writer builds a unit file, section by section.
type writer struct{ b strings.Builder }

func newWriter(what string) *writer {
	w := &writer{}
	fmt.Fprintf(&w.b, "%s: %s.\n", Marker, what)
	w.b.WriteString("# `slipway install` rewrites this file; put your changes in a drop-in (systemctl edit).\n")
	return w
}

func (w *writer) section(name string) {
	if w.b.Len() > 0 {
		w.b.WriteString("\n")
	}
	fmt.Fprintf(&w.b, "[%s]\n", name)
}

// set writes one setting. Values that came from the config are escaped by
// the callers (execLine); the rest are slipway's own and never contain
// specifiers or newlines.
func (w *writer) set(key, value string) { fmt.Fprintf(&w.b, "%s=%s\n", key, value) }

func (w *writer) String() string { return w.b.String() }

// execLine renders argv for ExecStart=. Every word is double-quoted unless
// plain; systemd's own expansions ($VAR, %x specifiers) are escaped, so the
// program gets exactly argv.
func execLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = execWord(a)
	}
	return strings.Join(words, " ")
}

func execWord(s string) string {
	if s != "" && strings.IndexFunc(s, special) < 0 {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '$':
			b.WriteString("$$")
		case '%':
			b.WriteString("%%")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// special reports whether r needs quoting in an ExecStart= word.
func special(r rune) bool {
	plain := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,=@", r)
	return !plain
}

// EnvFile renders env (KEY=VALUE pairs, the last of a key winning) as a
// file for EnvironmentFile=. Values are single-quoted, which systemd takes
// literally; a value with a single quote is double-quoted with \ escapes
// instead. A value with a newline cannot be carried and is an error.
func EnvFile(env []string) ([]byte, error) {
	vals := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if strings.ContainsAny(v, "\n\r") {
			return nil, fmt.Errorf("variable %s has a newline in its value, which systemd's EnvironmentFile= cannot carry", k)
		}
		vals[k] = v
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by slipway at each start of the service: the env file, then slipway's variables.\n")
	for _, k := range keys {
		v := vals[k]
		if !strings.Contains(v, "'") {
			fmt.Fprintf(&b, "%s='%s'\n", k, v)
			continue
		}
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`", "$", `\$`)
		fmt.Fprintf(&b, "%s=\"%s\"\n", k, r.Replace(v))
	}
	return []byte(b.String()), nil
}
