package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// systemConfig is the last place Find looks.
var systemConfig = "/etc/slipway/slipway.yml"

// Find returns the config file to use: flag (the -c/--config value) if set,
// else $SLIPWAY_CONFIG if set, else ./slipway.yml, else
// /etc/slipway/slipway.yml. A file named by the flag or the variable must
// exist; when none of the default places has one the error wraps ErrNotFound.
func Find(flag string) (string, error) {
	if flag != "" {
		return explicit(flag, "--config")
	}
	if env := os.Getenv("SLIPWAY_CONFIG"); env != "" {
		return explicit(env, "$SLIPWAY_CONFIG")
	}
	for _, p := range []string{"slipway.yml", systemConfig} {
		ok, err := isFile(p)
		if err != nil {
			return "", fmt.Errorf("find config: %w", err)
		}
		if ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: tried ./slipway.yml and %s; pass --config or set $SLIPWAY_CONFIG", ErrNotFound, systemConfig)
}

// explicit checks a config file the user named.
func explicit(p, from string) (string, error) {
	ok, err := isFile(p)
	if err != nil {
		return "", fmt.Errorf("config %s (from %s): %w", p, from, err)
	}
	if !ok {
		return "", fmt.Errorf("config %s (from %s): %w", p, from, fs.ErrNotExist)
	}
	return p, nil
}

func isFile(p string) (bool, error) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, fmt.Errorf("%s is a directory", p)
	}
	return true, nil
}

// Load reads the config at path and returns it with ${VAR} references
// expanded, defaults applied and every value checked. A problem in the file
// is an *Error naming path, line and column.
//
// ${NAME} references in every string value except commands (run, command)
// take their value from the process environment, else from the env files
// (read from <root>/env/, in the order of their env_files names); the process
// environment wins. app, root and env_files locate the env files, so they
// expand from the process environment only. A reference without a non-empty
// value expands to "" and is listed in Config.Unset; it is not an error here.
// An env file that is missing or malformed is skipped (check reports it).
//
// A relative root, and a repo that is a relative local path, are taken
// relative to the directory of the config file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxSize {
		return nil, &Error{Pos: Pos{File: path, Line: 1, Col: 1}, Msg: fmt.Sprintf("the file is larger than %d KiB, which no slipway.yml needs: is it the right file?", MaxSize>>10)}
	}
	return parse(path, data)
}

// MaxSize is the largest config file Load reads. A real one is a few KiB;
// the cap keeps a wrong file (a log, a dump) from taking the memory that
// parsing it would.
const MaxSize = 1 << 20

// parse is Load on the file's content.
func parse(file string, data []byte) (*Config, error) {
	body, err := parseDocument(file, data)
	if err != nil {
		return nil, err
	}
	ix := newIndex(file, body)
	cfg := &Config{Path: file}
	root, files := envLocation(ix)
	cfg.Env = readEnvFiles(root, files)
	var unsetAt map[string]bool
	cfg.Unset, unsetAt = expandTree(ix, body, os.LookupEnv, cfg.LookupEnv)
	if body != nil {
		if err := decode(ix, body, cfg); err != nil {
			return nil, err
		}
	}
	applyDefaults(cfg, ix)
	if err := validate(cfg, ix, unsetAt); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseDocument parses data into the body of its one YAML document; the body
// is nil for an empty file.
func parseDocument(file string, data []byte) (ast.Node, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		ix := &index{file: file}
		var yer yaml.Error
		if errors.As(err, &yer) {
			return nil, &Error{Pos: ix.pos(yer.GetToken()), Msg: syntaxMessage(yer.GetMessage())}
		}
		return nil, &Error{Pos: ix.pos(nil), Msg: err.Error()}
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			ix := &index{file: file}
			return nil, &Error{Pos: ix.pos(nodeToken(doc.Body)), Msg: "a second YAML document: slipway.yml holds one (remove the ---)"}
		}
		body = doc.Body
	}
	switch unwrap(body).(type) {
	case nil, *ast.MappingNode, *ast.MappingValueNode:
		return body, nil
	}
	ix := &index{file: file}
	return nil, &Error{Pos: ix.pos(nodeToken(body)), Msg: fmt.Sprintf("expected a mapping of keys (app: ..., repo: ...), got %s", nodeKind(body))}
}

// envLocation reads root and env_files from the document, expanded from the
// process environment and resolved as applyDefaults will, to find the env
// files before the rest is expanded.
func envLocation(ix *index) (root string, files map[string]string) {
	expand := func(p string) string {
		s, _ := scalar(ix.node(p))
		s, _ = expandString(s, os.LookupEnv)
		return s
	}
	written, app := expand("root"), expand("app")
	if written == "" && !namePattern.MatchString(app) {
		return "", nil // no root to look in; validate reports the app
	}
	root = resolveRoot(ix.file, written, app)
	m, ok := unwrap(ix.node("env_files")).(*ast.MappingNode)
	if !ok {
		return "", nil
	}
	files = make(map[string]string)
	for _, mv := range m.Values {
		if mv.Key == nil || mv.Key.IsMergeKey() {
			continue
		}
		name := keyName(mv.Key)
		files[name] = expand(keyPath{"env_files", name}.String())
	}
	return root, files
}

// readEnvFiles reads the env files that exist and parse; the others are left
// for check to report.
func readEnvFiles(root string, files map[string]string) map[string]map[string]string {
	env := make(map[string]map[string]string)
	for name, file := range files {
		if relProblem(file, false) != "" {
			continue
		}
		vars, err := ReadEnvFile(filepath.Join(root, "env", filepath.FromSlash(path.Clean(file))))
		if err != nil {
			continue
		}
		env[name] = vars
	}
	return env
}
