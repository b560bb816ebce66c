package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/release"
)

func newLogsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logs [DEPLOY_ID]",
		Short: "Print everything one deploy's commands printed (default: the last deploy)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := g.openApp()
			if err != nil {
				return err
			}
			defer a.close()
			var id int64
			if len(args) == 1 {
				if id, err = strconv.ParseInt(args[0], 10, 64); err != nil || id <= 0 {
					return usageError{Err: fmt.Errorf("%q is not a deploy id", args[0])}
				}
			} else {
				d, err := a.db.Last(signalContext(cmd))
				if errors.Is(err, ledger.ErrNotFound) {
					return errors.New("no deploys yet")
				}
				if err != nil {
					return err
				}
				id = d.ID
			}
			layout := release.Layout{Root: a.cfg.Root}
			f, err := os.Open(filepath.Join(layout.DeployLogDir(), strconv.FormatInt(id, 10)+".log"))
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no log for deploy %d", id)
			}
			if err != nil {
				return err
			}
			defer func() { _ = f.Close() }()
			_, err = io.Copy(g.stdout, f)
			return err
		},
	}
}
