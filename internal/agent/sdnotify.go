package agent

import (
	"net"
	"os"
)

// sdNotify sends state to systemd when it runs the agent as Type=notify
// ($NOTIFY_SOCKET); elsewhere it does nothing.
func sdNotify(state string) {
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

func notifyReady()    { sdNotify("READY=1") }
func notifyStopping() { sdNotify("STOPPING=1") }
