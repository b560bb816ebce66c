package unit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/internal/config"
)

// loadConfig writes a slipway.yml with its root in a temp dir and loads it.
func loadConfig(t *testing.T, services string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	body := "app: board\nrepo: /srv/git/board.git\nroot: " + root + "\nuser: board\nmanager: systemd\nshared: [data]\n" +
		"env_files: {backend: backend.env}\nservices:\n" + services
	path := filepath.Join(dir, "slipway.yml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// verify runs systemd-analyze verify on f; programs the unit runs must exist.
func verify(t *testing.T, files ...File) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, []byte(f.Content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command("systemd-analyze", append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, files[0].Content)
	}
}

func executableAt(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestServiceUnits(t *testing.T) {
	cfg := loadConfig(t, `  backend:
    dir: backend
    command: .venv/bin/python app.py --name "50% off"
    env_file: backend
    port: 8000
    stop_timeout: 1500ms
  worker:
    command: python3 worker.py --every 1
  external:
    unit: nginx.service
`)
	executableAt(t, filepath.Join(cfg.Root, "current", "backend", ".venv", "bin", "python"))
	files := Services(cfg)
	if len(files) != 2 {
		t.Fatalf("want the two services with a command, got %d units", len(files))
	}
	backend, worker := files[0], files[1]
	if backend.Name != "board-backend.service" || worker.Name != "board-worker.service" {
		t.Fatalf("names: %s %s", backend.Name, worker.Name)
	}
	for _, want := range []string{
		"User=board\n",
		"WorkingDirectory=" + cfg.Root + "/current/backend\n",
		"EnvironmentFile=" + cfg.Root + "/run/env/backend.env\n",
		// Shell syntax (the quotes) runs through /bin/sh; $ and % are escaped.
		`ExecStart=/bin/sh -c ".venv/bin/python app.py --name \"50%% off\""` + "\n",
		"Restart=on-failure\n",
		"TimeoutStopSec=2s\n",
		"NoNewPrivileges=yes\n", "PrivateTmp=yes\n", "ProtectSystem=strict\n",
		"ReadWritePaths=-" + cfg.Root + "/shared\n",
		"ConditionPathExists=!" + cfg.Root + "/run/stopped/backend\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(backend.Content, want) {
			t.Errorf("backend unit lacks %q:\n%s", want, backend.Content)
		}
	}
	if !strings.Contains(worker.Content, "ExecStart=python3 worker.py --every 1\n") {
		t.Errorf("worker ExecStart:\n%s", worker.Content)
	}
	if !Owned(backend.Content) || Owned("[Unit]\n") {
		t.Error("Owned does not tell slipway's units from others")
	}
	verify(t, backend, worker)
}

func TestRelativeProgramUnderCurrent(t *testing.T) {
	cfg := loadConfig(t, "  api:\n    dir: api\n    command: ./bin/api --port 8000\n")
	executableAt(t, filepath.Join(cfg.Root, "current", "api", "bin", "api"))
	f := Service(cfg, cfg.Services["api"])
	if want := "ExecStart=" + cfg.Root + "/current/api/bin/api --port 8000\n"; !strings.Contains(f.Content, want) {
		t.Fatalf("want %q in\n%s", want, f.Content)
	}
	verify(t, f)
}

func TestAgentAndTimerUnits(t *testing.T) {
	cfg := loadConfig(t, "  api:\n    command: ./api\n")
	bin := filepath.Join(t.TempDir(), "slipway")
	executableAt(t, bin)
	agent := Agent(cfg, bin, "/etc/slipway/board.yml", "/home/board")
	for _, want := range []string{"Type=notify\n", "ExecStart=" + bin + " --config /etc/slipway/board.yml agent\n",
		"ReadWritePaths=" + cfg.Root + " /etc/systemd/system -/home/board\n"} {
		if !strings.Contains(agent.Content, want) {
			t.Errorf("agent unit lacks %q:\n%s", want, agent.Content)
		}
	}
	svc, timer := Timer(cfg, bin, "/etc/slipway/board.yml", cfg.Root+"/home", 30*time.Second)
	if svc.Name != "slipway-board-deploy.service" || timer.Name != "slipway-board-deploy.timer" {
		t.Fatalf("names %s %s", svc.Name, timer.Name)
	}
	for _, want := range []string{"OnUnitInactiveSec=30s\n", "RandomizedDelaySec=3s\n", "Unit=slipway-board-deploy.service\n"} {
		if !strings.Contains(timer.Content, want) {
			t.Errorf("timer lacks %q:\n%s", want, timer.Content)
		}
	}
	// The home under root is writable through root already.
	if !strings.Contains(svc.Content, "ReadWritePaths="+cfg.Root+" /etc/systemd/system\n") {
		t.Errorf("deploy unit:\n%s", svc.Content)
	}
	verify(t, agent, svc, timer)
}

func TestEnvFile(t *testing.T) {
	b, err := EnvFile([]string{"B=two words", "A=x", "A=last wins", `Q=it's "$HOME" \n`, "EMPTY=", "junk"})
	if err != nil {
		t.Fatal(err)
	}
	want := "A='last wins'\nB='two words'\nEMPTY=''\nQ=\"it's \\\"\\$HOME\\\" \\\\n\"\n"
	if got := string(b); !strings.HasSuffix(got, want) {
		t.Fatalf("got\n%s\nwant suffix\n%s", got, want)
	}
	if _, err := EnvFile([]string{"K=a\nb"}); err == nil || !strings.Contains(err.Error(), "K has a newline") {
		t.Fatalf("newline: %v", err)
	}
}

func TestProxiedServiceUnits(t *testing.T) {
	cfg := loadConfig(t, "  web:\n    command: ./web\n    proxy: { listen: 0.0.0.0:3000, health: /health }\n")
	executableAt(t, filepath.Join(cfg.Root, "current", "web"))
	files := Services(cfg)
	if len(files) != 2 || files[0].Name != "board-web@.service" || files[1].Name != "slipway-board-proxy.service" {
		t.Fatalf("units: %+v", files)
	}
	if want := "EnvironmentFile=" + cfg.Root + "/run/env/web.%i.env\n"; !strings.Contains(files[0].Content, want) {
		t.Errorf("template lacks %q:\n%s", want, files[0].Content)
	}
	if !strings.Contains(files[1].Content, "Type=notify\n") || !strings.Contains(files[1].Content, " proxy\n") {
		t.Errorf("proxy unit:\n%s", files[1].Content)
	}
	verify(t, files...)
}
