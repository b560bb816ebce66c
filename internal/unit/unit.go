// Package unit writes the systemd units slipway installs for an app: one
// service unit per service, the agent's unit (Type=notify), and the timer
// pair of timer mode. It also writes the environment file each service unit
// reads, in the syntax systemd's EnvironmentFile= parses.
//
// Units point at <root>/current, not at one release: a switch of `current`
// and a restart is all a new version needs, and a reboot starts whatever
// `current` names.
package unit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/release"
	"github.com/slipway-dev/slipway/internal/run"
)

// Dir is where slipway writes its units.
const Dir = "/etc/systemd/system"

// Marker starts every unit slipway writes; a unit without it is the
// operator's own and is never rewritten or removed.
const Marker = "# Written by slipway"

// File is one unit file.
type File struct {
	Name    string // e.g. board-backend.service
	Content string
}

// Path is where the unit file lives.
func (f File) Path() string { return filepath.Join(Dir, f.Name) }

// Owned reports whether content is a unit slipway wrote.
func Owned(content string) bool { return strings.HasPrefix(content, Marker) }

// AgentName is the agent's unit for app.
func AgentName(app string) string { return "slipway-" + app + "-agent.service" }

// DeployName is timer mode's oneshot unit for app; TimerName its timer.
func DeployName(app string) string { return "slipway-" + app + "-deploy.service" }

// TimerName is timer mode's timer unit for app.
func TimerName(app string) string { return "slipway-" + app + "-deploy.timer" }

// EnvPath is the environment file of a service, written at each start.
// It lives in run/, not in a release (it holds secrets) and not in env/
// (that is the operator's).
func EnvPath(root, service string) string {
	return filepath.Join(root, "run", "env", service+".env")
}

// Generated reports whether slipway writes the unit of s: it does when the
// service has a command; a service given only as `unit:` runs the
// operator's own unit.
func Generated(s *config.Service) bool { return strings.TrimSpace(s.Command) != "" }

// Services returns the units of the app's services that slipway writes: a
// template unit for a proxied service, and for the app's proxy.
func Services(cfg *config.Config) []File {
	var out []File
	proxied := false
	for _, name := range cfg.ServiceNames() {
		s := cfg.Services[name]
		if Generated(s) {
			out = append(out, Service(cfg, s))
		}
		proxied = proxied || s.Proxy != nil
	}
	if proxied {
		out = append(out, Proxy(cfg))
	}
	return out
}

// TemplateName is the template unit of a proxied service: one instance per
// port (<app>-<service>@<port>.service).
func TemplateName(app, service string) string { return app + "-" + service + "@.service" }

// InstanceName is the unit of a proxied service's instance on port.
func InstanceName(app, service string, port int) string {
	return app + "-" + service + "@" + strconv.Itoa(port) + ".service"
}

// ProxyName is the unit of the app's proxy.
func ProxyName(app string) string { return "slipway-" + app + "-proxy.service" }

// Service renders the unit of one service; a proxied service's is a
// template whose instance name is its port.
func Service(cfg *config.Config, s *config.Service) File {
	layout := release.Layout{Root: cfg.Root}
	dir := filepath.Join(layout.CurrentLink(), s.Dir)
	name, envPath := s.Unit, EnvPath(cfg.Root, s.Name)
	what := fmt.Sprintf("the %s service of %s", s.Name, cfg.App)
	if s.Proxy != nil {
		// %i is the port; the instance's environment (PORT included) is
		// written for it at each start.
		name, envPath = TemplateName(cfg.App, s.Name), EnvPath(cfg.Root, s.Name+".%i")
		what = fmt.Sprintf("the instances (one per port) of the proxied %s service of %s", s.Name, cfg.App)
	}
	w := newWriter(what)
	w.section("Unit")
	w.set("Description", fmt.Sprintf("%s %s (slipway)", cfg.App, s.Name))
	w.set("After", "network.target")
	// `slipway stop` marks the service; while marked, not even a boot
	// starts it (a condition that fails skips the unit, it does not fail it).
	w.set("ConditionPathExists", "!"+filepath.Join(layout.StoppedDir(), s.Name))
	w.section("Service")
	// exec: systemctl start fails at once when the program cannot be executed.
	w.set("Type", "exec")
	if cfg.User != "" {
		w.set("User", cfg.User)
	}
	w.set("WorkingDirectory", dir)
	w.set("EnvironmentFile", envPath)
	w.set("ExecStart", execLine(serviceArgv(s.Command, dir)))
	w.set("Restart", "on-failure")
	w.set("RestartSec", "1s")
	w.set("TimeoutStopSec", seconds(s.StopTimeout.D()))
	w.set("SyslogIdentifier", cfg.App+"-"+s.Name)
	// Hardening: the release is read-only to the service, shared/ is its data.
	w.set("NoNewPrivileges", "yes")
	w.set("PrivateTmp", "yes")
	w.set("ProtectSystem", "strict")
	w.set("ReadWritePaths", "-"+layout.SharedDir())
	w.set("ProtectControlGroups", "yes")
	w.set("ProtectKernelTunables", "yes")
	w.set("RestrictSUIDSGID", "yes")
	w.section("Install")
	w.set("WantedBy", "multi-user.target")
	return File{Name: name, Content: w.String()}
}

// Proxy renders the unit of the app's proxy (`slipway proxy`), which owns
// the public listeners of the proxied services and outlives the agent.
func Proxy(cfg *config.Config) File {
	bin, cfgPath := "/usr/local/bin/slipway", cfg.Path
	if abs, err := filepath.Abs(cfgPath); err == nil {
		cfgPath = abs
	}
	if p, err := os.Executable(); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			bin = p
		}
	}
	w := newWriter("the zero-downtime proxy of " + cfg.App)
	w.section("Unit")
	w.set("Description", "slipway proxy for "+cfg.App)
	w.set("After", "network.target")
	w.section("Service")
	w.set("Type", "notify")
	w.set("NotifyAccess", "main")
	w.set("ExecStart", execLine([]string{bin, "--config", cfgPath, "proxy"}))
	w.set("Restart", "always")
	w.set("RestartSec", "1s")
	w.set("TimeoutStopSec", "40s")
	w.set("NoNewPrivileges", "yes")
	w.set("PrivateTmp", "yes")
	w.set("ProtectSystem", "strict")
	w.set("ReadWritePaths", filepath.Join(cfg.Root, "run"))
	w.section("Install")
	w.set("WantedBy", "multi-user.target")
	return File{Name: ProxyName(cfg.App), Content: w.String()}
}

// Agent renders the agent's unit. bin is slipway's absolute path, cfgPath
// the config's; home is the app user's home, where builds keep caches.
func Agent(cfg *config.Config, bin, cfgPath, home string) File {
	w := newWriter("the slipway agent of " + cfg.App)
	w.section("Unit")
	w.set("Description", "slipway agent for "+cfg.App)
	w.set("After", "network-online.target")
	w.set("Wants", "network-online.target")
	w.section("Service")
	w.set("Type", "notify")
	w.set("NotifyAccess", "main")
	w.set("ExecStart", execLine([]string{bin, "--config", cfgPath, "agent"}))
	w.set("Restart", "on-failure")
	w.set("RestartSec", "2s")
	// The agent waits up to two minutes for a running deploy at SIGTERM.
	w.set("TimeoutStopSec", "150s")
	// Services are systemd's, not the agent's children: only the agent and
	// the build it runs stop with it.
	w.set("KillMode", "mixed")
	hardenDeployer(w, cfg, home)
	w.section("Install")
	w.set("WantedBy", "multi-user.target")
	return File{Name: AgentName(cfg.App), Content: w.String()}
}

// Timer renders timer mode: a oneshot that runs `slipway deploy`, and the
// timer that starts it every interval after the last run ended.
func Timer(cfg *config.Config, bin, cfgPath, home string, every time.Duration) (svc, timer File) {
	w := newWriter("timer mode's deploy of " + cfg.App)
	w.section("Unit")
	w.set("Description", "slipway deploy of "+cfg.App+" (timer mode)")
	w.set("After", "network-online.target")
	w.set("Wants", "network-online.target")
	w.section("Service")
	w.set("Type", "oneshot")
	w.set("ExecStart", execLine([]string{bin, "--config", cfgPath, "deploy", "--trigger", "timer"}))
	// 3: another deploy or a manual freeze holds the lock; that is not a failure.
	w.set("SuccessExitStatus", "3")
	w.set("TimeoutStartSec", "1h")
	w.set("KillMode", "mixed")
	hardenDeployer(w, cfg, home)
	svc = File{Name: DeployName(cfg.App), Content: w.String()}

	w = newWriter("timer mode's schedule for " + cfg.App)
	w.section("Unit")
	w.set("Description", "slipway deploy of "+cfg.App+" every "+every.String())
	w.section("Timer")
	w.set("OnBootSec", "10s")
	w.set("OnUnitInactiveSec", seconds(every))
	w.set("AccuracySec", "1s")
	w.set("RandomizedDelaySec", seconds(every/10))
	w.set("Unit", DeployName(cfg.App))
	w.section("Install")
	w.set("WantedBy", "timers.target")
	return svc, File{Name: TimerName(cfg.App), Content: w.String()}
}

// hardenDeployer is the sandbox of the agent and of timer mode's oneshot:
// they write the app's root, the units, and the app user's caches.
func hardenDeployer(w *writer, cfg *config.Config, home string) {
	w.set("NoNewPrivileges", "yes")
	w.set("PrivateTmp", "yes")
	w.set("ProtectSystem", "strict")
	paths := []string{cfg.Root, Dir}
	if home != "" && home != "/" && !strings.HasPrefix(home, cfg.Root+"/") {
		paths = append(paths, "-"+home)
	}
	w.set("ReadWritePaths", strings.Join(paths, " "))
}

// serviceArgv is the argv of a service's command as systemd runs it: a
// program with a slash is relative to the service's directory under
// `current`, as the process manager runs it; shell syntax goes to /bin/sh.
func serviceArgv(command, dir string) []string {
	argv := run.Argv(command)
	if len(argv) > 0 && strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]) {
		argv = slices.Clone(argv)
		argv[0] = filepath.Join(dir, argv[0])
	}
	return argv
}

// seconds formats d as systemd seconds, at least 1.
func seconds(d time.Duration) string {
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return fmt.Sprintf("%ds", max(s, 1))
}
