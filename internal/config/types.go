package config

import "time"

// The service managers (Config.Manager).
const (
	ManagerSystemd = "systemd"
	ManagerProcess = "process"
)

// Duration is a Go duration written as a string in YAML ("90s", "5m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is one app's slipway.yml after defaults and ${VAR} expansion.
type Config struct {
	// Path is the file the config was loaded from.
	Path string `yaml:"-"`

	App          string            `yaml:"app"`
	Root         string            `yaml:"root"`
	Repo         string            `yaml:"repo"`
	Branch       string            `yaml:"branch"`
	User         string            `yaml:"user"` // "" means the invoking user
	KeepReleases int               `yaml:"keep_releases"`
	Shared       []string          `yaml:"shared"`
	EnvFiles     map[string]string `yaml:"env_files"`
	RequireEnv   []string          `yaml:"require_env"`

	Build    []Step              `yaml:"build"`
	Migrate  *Step               `yaml:"migrate"`
	Manager  string              `yaml:"manager"` // ManagerSystemd or ManagerProcess
	Services map[string]*Service `yaml:"services"`
	Health   *Health             `yaml:"health"`
	Smoke    []Check             `yaml:"smoke"`

	Snapshot *Snapshot `yaml:"snapshot"`
	Triggers Triggers  `yaml:"triggers"`
	API      API       `yaml:"api"`
	Notify   []Notify  `yaml:"notify"`
	Fleet    *Fleet    `yaml:"fleet"`

	// Unset lists the ${VAR} references that had no value in the process
	// environment or the env files; verify-env refuses a deploy while any remain.
	Unset []VarRef `yaml:"-"`
	// Env holds the variables read from the env files, by env_files name.
	Env map[string]map[string]string `yaml:"-"`
}

// VarRef is one ${VAR} reference in the config file.
type VarRef struct {
	Name string
	Pos  Pos
}

// Pos is a place in the config file, printed as file:line:col.
type Pos struct {
	File      string
	Line, Col int
}

// Step is a build step or the migrate step: a command run inside the new release.
type Step struct {
	Name    string   `yaml:"name"`
	Dir     string   `yaml:"dir"`
	Run     string   `yaml:"run"`
	EnvFile string   `yaml:"env_file"`
	Timeout Duration `yaml:"timeout"`
	Reuse   *Reuse   `yaml:"reuse"`
	// PauseTraffic (migrate only) holds the proxied services' requests at
	// the proxy while the migration runs.
	PauseTraffic bool `yaml:"pause_traffic"`
}

// Reuse copies Paths from the previous release when every Key file is byte-identical.
type Reuse struct {
	Paths []string `yaml:"paths"`
	Key   []string `yaml:"key"`
	// Link hard-links the files instead of copying them: several times
	// faster for big trees (a venv), at the price that a build step must
	// never modify a file under Paths in place (it would change the older
	// release too). New and replaced files are safe.
	Link bool `yaml:"link"`
	// Share keeps each path once, in <root>/deps/, and links it into
	// every release that reuses it: no copy at all, whatever its size,
	// at the price that the releases sharing it share its files (nothing
	// may modify it in place, nor write into it).
	Share bool `yaml:"share"`
}

// Service is one long-running process of the app.
type Service struct {
	// Name is the key under services:.
	Name        string   `yaml:"-"`
	Dir         string   `yaml:"dir"`
	Command     string   `yaml:"command"`
	Unit        string   `yaml:"unit"`
	EnvFile     string   `yaml:"env_file"`
	Port        int      `yaml:"port"`
	StopTimeout Duration `yaml:"stop_timeout"`
	Proxy       *Proxy   `yaml:"proxy"`
}

// Proxy is the zero-downtime mode of an HTTP service.
type Proxy struct {
	Listen       string   `yaml:"listen"`
	Health       string   `yaml:"health"`
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Health is the check that proves a new version up.
type Health struct {
	URL          string   `yaml:"url"`
	ExpectStatus int      `yaml:"expect_status"`
	Timeout      Duration `yaml:"timeout"`
	Interval     Duration `yaml:"interval"`
	// Settle is how long, once health and smoke passed, every service must
	// stay up and health keep passing before the release is marked safe.
	Settle Duration `yaml:"settle"`
	// FailAfter ends the wait for health after that many definitive
	// refusals in a row (a status other than 429, 502, 503 and 504),
	// rather than at the timeout; 0 waits for the timeout.
	FailAfter int `yaml:"fail_after"`
}

// Check is one smoke check: an HTTP request or a command.
type Check struct {
	Name         string            `yaml:"name"`
	URL          string            `yaml:"url"`
	Method       string            `yaml:"method"`
	Headers      map[string]string `yaml:"headers"`
	ExpectStatus int               `yaml:"expect_status"`
	ExpectBody   string            `yaml:"expect_body"`
	Run          string            `yaml:"run"`
	Dir          string            `yaml:"dir"`
	EnvFile      string            `yaml:"env_file"`
	Timeout      Duration          `yaml:"timeout"`
}

// Snapshot configures restore points.
type Snapshot struct {
	// Data are shared/ paths the built-in data provider archives.
	Data []string `yaml:"data"`
	// Create, Restore and Delete are the command provider's templates.
	Create    string `yaml:"create"`
	IDPattern string `yaml:"id_pattern"`
	Restore   string `yaml:"restore"`
	Delete    string `yaml:"delete"`
	VMID      string `yaml:"vm_id"`
	// Keep is how many snapshots of each label are kept.
	Keep int `yaml:"keep"`
	// RestoreData is "auto" (a rollback after a migration restores the
	// pre-deploy data snapshot) or "never".
	RestoreData string `yaml:"restore_data"`
	// PostDeploy takes a post-deploy snapshot after mark-safe.
	PostDeploy bool `yaml:"post_deploy"`
	// Timeout bounds each snapshot.
	Timeout Duration `yaml:"timeout"`
}

// The values of snapshot.restore_data.
const (
	RestoreDataAuto  = "auto"
	RestoreDataNever = "never"
)

// Triggers configures automatic deploys.
type Triggers struct {
	Poll    Duration `yaml:"poll"`
	Webhook *Webhook `yaml:"webhook"`
}

// Webhook is the signed push endpoint.
type Webhook struct {
	Listen    string `yaml:"listen"`
	SecretEnv string `yaml:"secret_env"`
}

// API is the agent's HTTP API.
type API struct {
	Listen    string `yaml:"listen"`
	TokenEnv  string `yaml:"token_env"`
	TokenFile string `yaml:"token_file"`
	// The viewer token signs in to the dashboard read-only.
	ViewerTokenEnv  string `yaml:"viewer_token_env"`
	ViewerTokenFile string `yaml:"viewer_token_file"`
}

// Notify is one deploy notification target.
type Notify struct {
	URL string `yaml:"url"`
}
