package config

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// ServiceNames returns the names of the services, sorted.
func (c *Config) ServiceNames() []string {
	return slices.Sorted(maps.Keys(c.Services))
}

// EnvFilePath returns the file of the env_files entry name,
// <root>/env/<file>, or "" when there is no such entry.
func (c *Config) EnvFilePath(name string) string {
	file, ok := c.EnvFiles[name]
	if !ok {
		return ""
	}
	return filepath.Join(c.Root, "env", filepath.FromSlash(file))
}

// EnvFor returns the variables read from the env_files entry name; nil when
// the file was not read (or c is nil).
func (c *Config) EnvFor(name string) map[string]string {
	if c == nil {
		return nil
	}
	return c.Env[name]
}

// LookupEnv returns the value of key from the process environment, else from
// the env files in the order of their env_files names.
func (c *Config) LookupEnv(key string) (string, bool) {
	if v, ok := os.LookupEnv(key); ok {
		return v, true
	}
	if c == nil {
		return "", false
	}
	for _, name := range slices.Sorted(maps.Keys(c.Env)) {
		if v, ok := c.Env[name][key]; ok {
			return v, true
		}
	}
	return "", false
}

// InEnvFiles reports whether key has a non-empty value in some env file:
// the only place services and commands get their variables from.
func (c *Config) InEnvFiles(key string) bool {
	for name := range c.EnvFiles {
		if c.EnvFor(name)[key] != "" {
			return true
		}
	}
	return false
}
