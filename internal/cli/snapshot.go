package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"

	"github.com/slipway-dev/slipway/internal/ledger"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot list | create | restore ID | delete ID",
		Short: "Restore points: the snapshot ledger, and taking, restoring and deleting snapshots",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the snapshots in the ledger, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withApp(func(a *app) error {
				ss, err := a.db.Snapshots(signalContext(cmd), 0)
				if err != nil {
					return err
				}
				if asJSON {
					printJSON(g, ss)
					return nil
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPROVIDER\tLABEL\tCOMMIT\tDEPLOY\tSIZE\tCREATED\tRESTORED\tTAGS")
				for _, s := range ss {
					restored := "-"
					if !s.Restored.IsZero() {
						restored = s.Restored.Local().Format(time.DateTime)
						if s.RestoredBy > 0 {
							restored += fmt.Sprintf(" (deploy %d)", s.RestoredBy)
						}
					}
					deploy := "-"
					if s.DeployID > 0 {
						deploy = fmt.Sprint(s.DeployID)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.CommitID, s.Provider, orDash(s.Label), orDash(short(s.Commit)),
						deploy, sizeOrDash(s.Size), s.Created.Local().Format(time.DateTime), restored, orDash(strings.Join(s.Tags, ",")))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print as JSON")

	var label string
	var tags []string
	create := &cobra.Command{
		Use:   "create [--label L] [--tag T]...",
		Short: "Take a snapshot now, with every configured provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withApp(func(a *app) error {
				ss, err := a.engine.TakeSnapshot(signalContext(cmd), label, tags)
				for _, s := range ss {
					fmt.Fprintf(g.stdout, "%s\t%s\t%s\n", s.CommitID, s.Provider, sizeOrDash(s.Size))
				}
				return err
			})
		},
	}
	create.Flags().StringVar(&label, "label", "", "the snapshot's label (default manual); snapshot.keep applies per label")
	create.Flags().StringArrayVar(&tags, "tag", nil, "a tag (repeatable)")

	var yes bool
	restore := &cobra.Command{
		Use:   "restore ID",
		Short: "Restore a snapshot (data: services stopped, data swapped in, services started and health-checked)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withApp(func(a *app) error {
				s, err := a.db.SnapshotByID(signalContext(cmd), args[0])
				if err != nil {
					return usageError{Err: err}
				}
				if !yes && isTTY(os.Stdin) {
					fmt.Fprintf(g.stderr, "restore %s snapshot %s (%s, taken %s)? The data now live is replaced. [y/N] ",
						s.Provider, s.CommitID, orDash(s.Label), s.Created.Local().Format(time.DateTime))
					answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
					if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
						return usageError{Err: errors.New("not restored")}
					}
				}
				msg, err := a.engine.RestoreSnapshot(signalContext(cmd), s.CommitID, actor())
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, msg)
				return nil
			})
		},
	}
	restore.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a snapshot and its ledger row",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withApp(func(a *app) error {
				if err := a.engine.DeleteSnapshot(signalContext(cmd), args[0]); err != nil {
					if errors.Is(err, ledger.ErrNoSnapshot) {
						return usageError{Err: err}
					}
					return err
				}
				fmt.Fprintf(g.stdout, "deleted %s\n", args[0])
				return nil
			})
		},
	}
	var rec ledger.Snapshot
	record := &cobra.Command{
		Use:   "record --id ID [--vm-id V] [--label L] [--agent A] [--commit SHA] [--tag T]...",
		Short: "Record a snapshot taken outside slipway (as POST /commits does): `slipway fleet` records the VM snapshots it takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(rec.CommitID) == "" || len(rec.CommitID) > 200 || len(rec.Label) > 500 || len(rec.Tags) > 50 {
				return usageError{Err: errors.New("--id is required (at most 200 characters; label 500; 50 tags)")}
			}
			return g.withApp(func(a *app) error {
				rec.App, rec.Tags = a.cfg.App, tags
				id, err := a.db.AddSnapshot(signalContext(cmd), rec)
				if err == nil {
					fmt.Fprintf(g.stdout, "recorded snapshot %s (row %d)\n", rec.CommitID, id)
				}
				return err
			})
		},
	}
	rf := record.Flags()
	rf.StringVar(&rec.CommitID, "id", "", "the snapshot's id")
	rf.StringVar(&rec.VMID, "vm-id", "", "the VM it is of")
	rf.StringVar(&rec.Label, "label", "", "its label (pre-deploy, post-deploy, ...)")
	rf.StringVar(&rec.Agent, "agent", "", "who took it")
	rf.StringVar(&rec.Commit, "commit", "", "the app's commit it holds")
	rf.StringArrayVar(&tags, "tag", nil, "a tag (repeatable)")
	cmd.AddCommand(list, create, restore, del, record)
	return cmd
}

func sizeOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return deploy.HumanBytes(n)
}
