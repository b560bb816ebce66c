package service

import (
	"errors"
	"syscall"
	"testing"
)

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   error
		want string
	}{
		{"port held", &PortHeldError{Service: "backend", Port: 8000, PID: 1234, Command: "python3 -m http.server 8000"}, ErrPortHeld,
			"port 8000 is held by pid 1234 (python3 -m http.server 8000), not by slipway's backend service; stop that process or change services.backend.port"},
		{"port held by an unseen process", &PortHeldError{Service: "web", Port: 3000}, ErrPortHeld,
			"port 3000 is held by a process slipway cannot see (run `ss -ltnp` as root to find it), not by slipway's web service; stop that process or change services.web.port"},
		{"exited with a status", &ExitedError{Service: "worker", ExitCode: 1, Log: "Traceback:\nKeyError: 'DATABASE_URL'\n", LogFile: "/opt/a/logs/worker.log"}, ErrExited,
			"service worker exited right after start with exit status 1 (log: /opt/a/logs/worker.log); its last output:\n    Traceback:\n    KeyError: 'DATABASE_URL'"},
		{"killed by a signal, silent", &ExitedError{Service: "worker", ExitCode: -1, Signal: syscall.SIGKILL}, ErrExited,
			"service worker exited right after start on signal killed; it printed nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("message\n got %q\nwant %q", got, tt.want)
			}
			if !errors.Is(tt.err, tt.is) {
				t.Errorf("errors.Is(%T, %v) = false", tt.err, tt.is)
			}
		})
	}
}
