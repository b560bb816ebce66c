// Package config loads and validates slipway.yml (docs/config.md) and writes the
// commented template of slipway init.
//
// Load works on the YAML syntax tree (goccy/go-yaml), so that every problem
// can name its file, line and column:
//
//  1. parse the file into its one document;
//  2. index the position of every value by its path (services.web.port);
//  3. read the env files, from root and env_files;
//  4. expand ${VAR} in the string values, recording the unset ones;
//  5. decode in strict mode (unknown keys and wrong types are errors);
//  6. apply the defaults;
//  7. validate, returning the first problem as an *Error.
package config
