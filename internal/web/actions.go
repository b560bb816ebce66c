package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/slipway-dev/slipway/internal/api"
	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/fleet"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
)

// Backend is what the pages change and read beyond the ledger: the
// agent's job queue and engine, which the CLI goes through too.
type Backend interface {
	// Enqueue queues a deploy or a rollback, as POST /deploys does.
	Enqueue(ctx context.Context, r api.Request) (int64, error)
	// Freeze freezes deploys with message; Unfreeze ends a freeze or
	// hold and says what it did. Both are recorded in the ledger.
	Freeze(ctx context.Context, message, actor string) error
	Unfreeze(ctx context.Context, actor string) (string, error)
	// Restore restores a snapshot, as `slipway snapshot restore` does,
	// and says what it did.
	Restore(ctx context.Context, snapshot, actor string) (string, error)
	// ServiceLog is the last lines of a service's log.
	ServiceLog(ctx context.Context, service string, lines int) (string, error)
}

// TriggerWeb is the ledger's trigger of what the dashboard started.
const TriggerWeb = "web"

// action is one state-changing form: what its confirmation asks, and
// what it does once confirmed. Fields are the form's values, checked.
type action struct {
	fleet bool // an action of the fleet's screens
	ask   func(f form) string
	do    func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, f form) error
}

// form is an action's checked fields.
type form struct {
	Commit, To, Message, Snapshot string
	Rollout                       int64
}

var actions = map[string]action{
	"deploy": {
		ask: func(f form) string {
			if f.Commit == "" {
				return "Deploy the branch's tip?"
			}
			return "Deploy commit " + f.Commit + "?"
		},
		do: queued(func(f form) api.Request { return api.Request{Kind: ledger.KindDeploy, Commit: f.Commit} }),
	},
	"rollback": {
		ask: func(f form) string {
			if f.To == "" {
				return "Roll back to the previous good release?"
			}
			return "Roll back to the release of commit " + f.To + "?"
		},
		do: queued(func(f form) api.Request { return api.Request{Kind: ledger.KindRollback, To: f.To} }),
	},
	"freeze": {
		ask: func(f form) string {
			return "Freeze deploys, manual and automatic, with the message “" + f.Message + "”?"
		},
		do: func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, f form) error {
			err := s.Backend.Freeze(r.Context(), f.Message, sess.Actor)
			if err == nil {
				http.Redirect(w, r, "/", http.StatusSeeOther)
			}
			return err
		},
	},
	"unfreeze": {
		ask: func(form) string { return "Unfreeze deploys?" },
		do: func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, _ form) error {
			_, err := s.Backend.Unfreeze(r.Context(), sess.Actor)
			if err == nil {
				http.Redirect(w, r, "/", http.StatusSeeOther)
			}
			return err
		},
	},
	"fleet-deploy": {
		fleet: true,
		ask: func(f form) string {
			if f.Commit == "" {
				return "Roll the branch's tip out to the fleet, batch by batch?"
			}
			return "Roll commit " + f.Commit + " out to the fleet, batch by batch?"
		},
		do: func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, f form) error {
			id, err := s.Fleet.Deploy(r.Context(), f.Commit, sess.Actor)
			if err == nil {
				http.Redirect(w, r, "/fleet/rollouts/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
			}
			return err
		},
	},
	"halt":   stopAction(fleet.StopHalt, "Halt rollout %d? Its hosts in flight finish; no other starts, and the updated hosts stay."),
	"revert": stopAction(fleet.StopRevert, "Revert rollout %d? Its hosts in flight finish; no other starts, and the updated hosts go back."),
	"restore": {
		ask: func(f form) string {
			return "Restore snapshot " + f.Snapshot + "? A data snapshot stops the services, swaps the data in and starts them again."
		},
		do: func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, f form) error {
			_, err := s.Backend.Restore(r.Context(), f.Snapshot, sess.Actor)
			if err == nil {
				http.Redirect(w, r, "/snapshots", http.StatusSeeOther)
			}
			return err
		},
	},
}

// stopAction halts or reverts a rollout.
func stopAction(how, question string) action {
	return action{
		fleet: true,
		ask:   func(f form) string { return fmt.Sprintf(question, f.Rollout) },
		do: func(s *Server, w http.ResponseWriter, r *http.Request, _ *Session, f form) error {
			err := s.Fleet.Stop(f.Rollout, how)
			if err == nil {
				http.Redirect(w, r, "/fleet/rollouts/"+strconv.FormatInt(f.Rollout, 10), http.StatusSeeOther)
			}
			return err
		},
	}
}

// queued is an action that queues the job req makes of the form, as the
// session's actor, and shows its page.
func queued(req func(form) api.Request) func(*Server, http.ResponseWriter, *http.Request, *Session, form) error {
	return func(s *Server, w http.ResponseWriter, r *http.Request, sess *Session, f form) error {
		q := req(f)
		q.Trigger, q.Actor = TriggerWeb, sess.Actor
		id, err := s.Backend.Enqueue(r.Context(), q)
		if err == nil {
			http.Redirect(w, r, "/history/"+strconv.FormatInt(id, 10), http.StatusSeeOther)
		}
		return err
	}
}

// readForm checks an action's fields.
func readForm(name string, r *http.Request) (form, error) {
	f := form{
		Commit:   strings.TrimSpace(r.PostFormValue("commit")),
		To:       strings.TrimSpace(r.PostFormValue("to")),
		Message:  strings.TrimSpace(r.PostFormValue("message")),
		Snapshot: strings.TrimSpace(r.PostFormValue("snapshot")),
	}
	if v := r.PostFormValue("rollout"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return f, errors.New("the rollout must be named by its id")
		}
		f.Rollout = n
	}
	switch {
	case (name == "halt" || name == "revert") && f.Rollout == 0:
		return f, errors.New("name the rollout to stop")
	case f.Commit != "" && !git.IsCommitID(f.Commit):
		return f, errors.New("the commit must be a hex commit id")
	case f.To != "" && !git.IsCommitID(f.To):
		return f, errors.New("the release to roll back to must be named by its commit id")
	case name == "freeze" && (f.Message == "" || len(f.Message) > 1000 || strings.ContainsFunc(f.Message, unicode.IsControl)):
		return f, errors.New("say why deploys are frozen, in one line of at most 1000 characters")
	case name == "restore" && (f.Snapshot == "" || len(f.Snapshot) > 200):
		return f, errors.New("name the snapshot to restore")
	}
	return f, nil
}

type confirmPage struct {
	page
	Action   string
	Question string
	Form     form
}

// act serves POST /actions/{action}: an operator's confirmed change. The
// first post (without confirm=yes) shows what it would do and asks; the
// second does it. Both need the session's CSRF token.
func (s *Server) act(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	sess, ok := s.SessionOf(r)
	if !ok {
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	if !CheckCSRF(sess, r) {
		http.Error(w, "the form lacks its CSRF token", http.StatusForbidden)
		return
	}
	name := r.PathValue("action")
	a, ok := actions[name]
	if !ok || a.fleet && s.Fleet == nil || !a.fleet && s.Backend == nil {
		http.Error(w, "no such action", http.StatusNotFound)
		return
	}
	p := &confirmPage{page: page{Session: sess}, Action: name}
	if sess.Role != Operator {
		p.Error = "You are signed in as a viewer: you can see everything and change nothing."
		s.render(w, http.StatusForbidden, "confirm.html", p)
		return
	}
	f, err := readForm(name, r)
	p.Form = f
	if err != nil {
		p.Error = err.Error()
		s.render(w, http.StatusBadRequest, "confirm.html", p)
		return
	}
	p.Question = a.ask(f)
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, http.StatusOK, "confirm.html", p)
		return
	}
	if err := a.do(s, w, r, sess, f); err != nil {
		p.Error = fmt.Sprintf("%s did not happen: %v", name, err)
		s.render(w, errorCode(err), "confirm.html", p)
	}
}

// errorCode is the HTTP status of a refused action, as the API answers.
func errorCode(err error) int {
	switch {
	case errors.Is(err, lock.ErrLocked), errors.Is(err, fleet.ErrLocked), errors.Is(err, ErrNotRunning), errors.Is(err, deploy.ErrEnvNotPrivate):
		return http.StatusConflict
	case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrNoSnapshot):
		return http.StatusNotFound
	case exitcode.Of(err) == exitcode.Usage:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
