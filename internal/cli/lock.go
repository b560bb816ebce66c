package cli

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
	"github.com/slipway-dev/slipway/internal/release"
)

func newLockCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lock status | acquire -m MSG | hold --key KEY --ttl D -m MSG | release [--key KEY]",
		Short: "Freeze and unfreeze deploys",
	}
	layoutOf := func() (release.Layout, error) {
		cfg, err := g.loadConfig()
		if err != nil {
			return release.Layout{}, err
		}
		l := release.Layout{Root: cfg.Root}
		return l, l.Ensure()
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show who holds or froze the deploy lock",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := layoutOf()
			if err != nil {
				return err
			}
			h, held, err := lock.Status(l.LockFile())
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(g, struct {
					Held   bool        `json:"held"`
					Frozen bool        `json:"frozen"`
					Holder lock.Holder `json:"holder"`
				}{held, h.Frozen, h})
				return nil
			}
			switch {
			case h.Frozen:
				fmt.Fprintf(g.stdout, "frozen: %s\n", h)
			case held:
				fmt.Fprintf(g.stdout, "held: %s\n", h)
			default:
				fmt.Fprintln(g.stdout, "free")
			}
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print as JSON")

	var msg string
	acquire := &cobra.Command{
		Use:   "acquire -m MSG",
		Short: "Freeze deploys, manual and automatic, until `lock release` (survives reboots)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if msg == "" || len(msg) > 1000 {
				return usageError{Err: errors.New("say why with -m MSG (at most 1000 characters)")}
			}
			l, err := layoutOf()
			if err != nil {
				return err
			}
			h := holderNow("manual")
			h.Message = msg
			if err := lock.Freeze(signalContext(cmd), l.LockFile(), h); err != nil {
				return err
			}
			g.recordLockEvent(l, ledger.EventFreeze, fmt.Sprintf("deploys frozen by %s: %s", orDash(actor()), msg))
			fmt.Fprintf(g.stdout, "deploys frozen: %s\n", msg)
			return nil
		},
	}
	acquire.Flags().StringVarP(&msg, "message", "m", "", "why deploys are frozen")

	var key string
	var ttl time.Duration
	var holdWait, holdJSON bool
	hold := &cobra.Command{
		Use:   "hold --key KEY --ttl DURATION -m MSG",
		Short: "Hold deploys for a while: only those that carry KEY (--hold) get through",
		Long: `hold freezes deploys, manual and automatic, except those run with
--hold KEY, until ` + "`lock release --key KEY`" + ` or until the ttl runs out. Run it
again with the same key to renew it. A fleet rollout holds each host so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case !validKey(key):
				return usageError{Err: errors.New(keyRule("--key"))}
			case ttl < time.Second || ttl > 24*time.Hour:
				return usageError{Err: errors.New("--ttl: from 1s to 24h")}
			case msg == "" || len(msg) > 1000:
				return usageError{Err: errors.New("say why with -m MSG (at most 1000 characters)")}
			}
			l, err := layoutOf()
			if err != nil {
				return err
			}
			h := holderNow("hold")
			h.Key = key
			held, err := lock.Acquire(signalContext(cmd), l.LockFile(), h, holdWait, false)
			if err != nil {
				return err
			}
			defer func() { _ = held.Release() }()
			h.Message, h.Expires = msg, h.Started.Add(ttl)
			if err := held.Freeze(h); err != nil {
				return err
			}
			if holdJSON {
				printJSON(g, heldState(l, key, h.Expires))
				return nil
			}
			fmt.Fprintf(g.stdout, "deploys held for %s until %s\n", key, h.Expires.Format(time.RFC3339))
			return nil
		},
	}
	hold.Flags().BoolVar(&holdJSON, "json", false, "print what is held as JSON: the key, until when, the live release, the safe commit, slipway's version")
	hold.Flags().StringVar(&key, "key", "", "the hold's key: deploys run with --hold KEY get through")
	hold.Flags().DurationVar(&ttl, "ttl", 0, "how long the hold lasts unless renewed")
	hold.Flags().StringVarP(&msg, "message", "m", "", "why deploys are held")
	hold.Flags().BoolVar(&holdWait, "wait", false, "wait for a running deploy to finish first")

	var wait bool
	var releaseKey string
	releaseCmd := &cobra.Command{
		Use:   "release [--key KEY]",
		Short: "Unfreeze deploys (with --key: only the hold of that key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := layoutOf()
			if err != nil {
				return err
			}
			said, err := lock.Unfreeze(signalContext(cmd), l.LockFile(), holderNow("manual"), releaseKey, wait)
			if err != nil {
				return err
			}
			if releaseKey == "" {
				g.recordLockEvent(l, ledger.EventUnfreeze, "deploys unfrozen by "+orDash(actor()))
			}
			fmt.Fprintln(g.stdout, said)
			return nil
		},
	}
	releaseCmd.Flags().BoolVar(&wait, "wait", false, "wait for a running deploy to finish first")
	releaseCmd.Flags().StringVar(&releaseKey, "key", "", "release only the hold of this key")
	cmd.AddCommand(status, acquire, hold, releaseCmd)
	return cmd
}

// heldState is what `lock hold --json` prints: the hold, and what it holds
// (the fields as `status --json` names them), read from the files alone.
func heldState(l release.Layout, key string, until time.Time) any {
	st := struct {
		Key     string              `json:"key"`
		Expires time.Time           `json:"expires"`
		Current *deploy.ReleaseInfo `json:"current"`
		Safe    string              `json:"safe_commit"`
		Slipway string              `json:"slipway_version"`
	}{Key: key, Expires: until, Slipway: Version}
	st.Safe, _ = l.SafeCommit()
	if name, _ := l.Current(); name != "" {
		if r, err := l.Open(name); err == nil {
			st.Current = &deploy.ReleaseInfo{Name: r.Name, Commit: r.Commit, Version: r.Version}
		}
	}
	return st
}

// recordLockEvent writes a freeze or an unfreeze into the ledger, as the
// dashboard's are. The change has happened: a ledger that cannot be
// written is said, not an error.
func (g *globals) recordLockEvent(l release.Layout, kind, detail string) {
	db, err := ledger.Open(l.StateDB())
	if err == nil {
		_, err = db.AddEvent(context.Background(), ledger.Event{Kind: kind, Detail: detail})
		_ = db.Close()
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "warning: could not record it in the ledger: %v\n", err)
	}
}

// actor names who ran the command, for the ledger.
func actor() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

func holderNow(trigger string) lock.Holder {
	return lock.NewHolder(trigger, time.Now())
}

// validKey is what a hold's key may be.
func validKey(k string) bool {
	if k == "" || len(k) > 100 {
		return false
	}
	return strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:") == ""
}

func keyRule(flag string) string {
	return flag + ": 1 to 100 letters, digits and the characters - _ . :"
}
