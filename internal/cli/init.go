package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/config"
)

func newInitCmd(g *globals) *cobra.Command {
	var force bool
	var out string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented slipway.yml for the repo in the working directory",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Stat(out); err == nil && !force {
				return usageError{Err: fmt.Errorf("%s exists; use --force to overwrite it", out)}
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			d := config.Detect(wd)
			if err := os.WriteFile(out, []byte(config.Template(d)), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s\n", out)
			for _, step := range config.NextSteps(d, out) {
				fmt.Fprintln(g.stderr, "next: "+step)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing file")
	cmd.Flags().StringVarP(&out, "output", "o", "slipway.yml", "where to write")
	return cmd
}
