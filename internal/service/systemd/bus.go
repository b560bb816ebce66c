package systemd

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// bus is the D-Bus connection to systemd that show reads units through: a
// call, where systemctl is a process (about 15 ms each, of a status's 40).
// It is made at the first use and again after it breaks; where there is
// none to make (no systemd, or no right to it), show runs systemctl.
var bus struct {
	mu   sync.Mutex
	conn *sdbus.Conn
}

func busConn() (*sdbus.Conn, error) {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.conn != nil && bus.conn.Connected() {
		return bus.conn, nil
	}
	if bus.conn != nil {
		bus.conn.Close()
		bus.conn = nil
	}
	dial := sdbus.NewSystemConnectionContext
	if os.Geteuid() == 0 {
		// Straight to systemd's own socket: no bus daemon in between.
		dial = sdbus.NewSystemdConnectionContext
	}
	// The connection lives as long as its context: not the caller's.
	c, err := dial(context.Background())
	if err != nil {
		return nil, err
	}
	bus.conn = c
	return c, nil
}

// showKeys are the properties show reads: of the unit, then of the service.
var showKeys = [2][]string{
	{"LoadState", "ActiveState", "SubState", "ActiveEnterTimestamp", "InvocationID"},
	{"Result", "MainPID", "ExecMainCode", "ExecMainStatus", "NRestarts"},
}

// show reads a unit's properties, as `systemctl show` prints them.
func show(ctx context.Context, unitName string) (props, error) {
	if p, err := showBus(ctx, unitName); err == nil {
		return p, nil
	}
	return showSystemctl(ctx, unitName)
}

func showBus(ctx context.Context, unitName string) (props, error) {
	c, err := busConn()
	if err != nil {
		return nil, err
	}
	u, err := c.GetUnitPropertiesContext(ctx, unitName)
	if err != nil {
		return nil, err
	}
	p := props{}
	for _, k := range showKeys[0] {
		p[k] = fmt.Sprint(u[k])
	}
	// An id is bytes, which systemctl prints in hex.
	p["InvocationID"] = ""
	if id, ok := u["InvocationID"].([]byte); ok {
		p["InvocationID"] = hex.EncodeToString(id)
	}
	// A time is microseconds since the epoch; systemctl prints it so.
	p["ActiveEnterTimestamp"] = ""
	if us, ok := u["ActiveEnterTimestamp"].(uint64); ok && us > 0 {
		p["ActiveEnterTimestamp"] = time.UnixMicro(int64(us)).UTC().Format(showTime)
	}
	if !strings.HasSuffix(unitName, ".service") {
		return p, nil
	}
	s, err := c.GetUnitTypePropertiesContext(ctx, unitName, "Service")
	if err != nil {
		return nil, err
	}
	for _, k := range showKeys[1] {
		p[k] = fmt.Sprint(s[k])
	}
	return p, nil
}

func showSystemctl(ctx context.Context, unitName string) (props, error) {
	out, err := Systemctl(ctx, "show", "--timestamp=utc",
		"-p", strings.Join(showKeys[0], ",")+","+strings.Join(showKeys[1], ","), unitName)
	if err != nil {
		return nil, err
	}
	p := props{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p, nil
}

// showTime is how `systemctl show --timestamp=utc` prints a time.
const showTime = "Mon 2006-01-02 15:04:05 MST"
