// Package sdnotify tells systemd about a Type=notify service's state.
package sdnotify

import (
	"net"
	"os"
)

// send sends state to systemd when it runs the agent as Type=notify
// ($NOTIFY_SOCKET); elsewhere it does nothing.
func send(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	_, _ = conn.Write([]byte(state))
}

// Ready says the service is up (listening).
func Ready() { send("READY=1") }

// Stopping says the service is shutting down.
func Stopping() { send("STOPPING=1") }
