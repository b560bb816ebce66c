package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/slipway-dev/slipway/internal/config"
	"github.com/slipway-dev/slipway/internal/fsutil"
	"github.com/slipway-dev/slipway/internal/unit"
)

// Uninstall stops and removes the app's units and its layout. It keeps
// shared/ (the app's data), env/ (its secrets) and the ledger unless
// Options.Purge; the system user stays (files elsewhere may be its).
//
// The caller stops the app's processes first (deploy.Engine.StopEverything):
// a layout removed from under them would leave them running, their ports
// held, with no pid file to find them by. Under the process manager an
// uninstall changes nothing outside the root, and needs neither root nor
// `user:`.
func Uninstall(ctx context.Context, o Options) (int, error) {
	var in *installer
	if o.Cfg.Manager == config.ManagerProcess {
		in = plainInstaller(ctx, o)
	} else {
		var err error
		if in, err = newInstaller(ctx, o); err != nil {
			return 0, err
		}
	}
	names := []string{unit.AgentName(in.Cfg.App), unit.TimerName(in.Cfg.App), unit.DeployName(in.Cfg.App)}
	for _, f := range unit.Services(in.Cfg) {
		names = append(names, f.Name)
	}
	for _, name := range names {
		if err := in.removeUnit(name); err != nil {
			return in.changed, err
		}
	}
	if len(in.rewritten) > 0 {
		if err := in.change("reload systemd", func() error { return systemctl(in.ctx, "daemon-reload") }); err != nil {
			return in.changed, err
		}
	}
	if in.Purge {
		return in.changed, in.remove(in.Cfg.Root)
	}
	l := in.layout
	for _, p := range []string{l.CurrentLink(), l.ReleasesDir(), l.DepsDir(), l.Repo(), l.RunDir(), l.LogDir()} {
		if err := in.remove(p); err != nil {
			return in.changed, err
		}
	}
	fmt.Fprintf(in.Out, "  kept %s, %s and %s (uninstall --purge removes them)\n", l.SharedDir(), l.EnvDir(), l.StateDB())
	return in.changed, nil
}

// remove deletes path and everything under it, when it exists.
func (in *installer) remove(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return in.change("remove "+path, func() error {
		if err := os.RemoveAll(path); err != nil {
			return err
		}
		return fsutil.SyncDir(filepath.Dir(path))
	})
}
