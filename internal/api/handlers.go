package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/exitcode"
	"github.com/slipway-dev/slipway/internal/git"
	"github.com/slipway-dev/slipway/internal/ledger"
	"github.com/slipway-dev/slipway/internal/lock"
)

var (
	errEOF  = io.EOF
	timeNow = time.Now
)

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"status":  "ok",
		"uptime":  time.Since(s.Started).Round(time.Second).Seconds(),
		"version": s.Version,
	})
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.Backend.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listDeploys(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000")
			return
		}
		limit = n
	}
	ds, err := s.Ledger.Deploys(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if ds == nil {
		ds = []ledger.Deploy{}
	}
	writeJSON(w, http.StatusOK, ds)
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "deploy id must be a positive integer")
		return 0, false
	}
	return id, true
}

func (s *Server) getDeploy(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	d, err := s.Ledger.Deploy(r.Context(), id)
	if errors.Is(err, ledger.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no deploy %d", id))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	steps, err := s.Ledger.Steps(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if steps == nil {
		steps = []ledger.Step{}
	}
	writeJSON(w, http.StatusOK, struct {
		ledger.Deploy
		Steps []ledger.Step `json:"steps"`
	}{d, steps})
}

func (s *Server) getDeployLog(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	f, err := os.Open(filepath.Join(s.LogDir, strconv.FormatInt(id, 10)+".log"))
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no log for deploy %d", id))
		return
	}
	defer func() { _ = f.Close() }()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.Copy(w, f)
}

func (s *Server) postDeploy(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Ref    string `json:"ref"`
		Commit string `json:"commit"`
		Force  bool   `json:"force"`
	}
	if !decode(w, r, &body) {
		return
	}
	switch {
	case body.Ref != "" && body.Commit != "":
		writeError(w, http.StatusBadRequest, "ref and commit are exclusive")
		return
	case body.Commit != "" && !git.IsCommitID(body.Commit):
		writeError(w, http.StatusBadRequest, "commit must be a hex commit id")
		return
	case body.Ref != "" && git.CheckRefName(body.Ref) != nil:
		writeError(w, http.StatusBadRequest, "ref is not a valid branch or tag name")
		return
	}
	s.enqueue(w, r, Request{Kind: ledger.KindDeploy, Ref: body.Ref, Commit: body.Commit, Force: body.Force})
}

func (s *Server) postRollback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		To          string `json:"to"`
		RestoreData bool   `json:"restore_data"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.To != "" && !git.IsCommitID(body.To) {
		writeError(w, http.StatusBadRequest, "to must be a hex commit id")
		return
	}
	s.enqueue(w, r, Request{Kind: ledger.KindRollback, To: body.To, RestoreData: body.RestoreData})
}

// enqueue accepts the job: 202 with its id, or, with ?follow=1, a stream
// of its step events ending with its result.
func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, req Request) {
	req.Trigger = "api"
	if trusted, _ := r.Context().Value(trustedKey).(bool); trusted {
		req.Trigger = "manual"
		req.Actor = r.Header.Get("X-Slipway-Actor")
	}
	follow := r.URL.Query().Get("follow") == "1"
	var sub = s.subscribeIf(follow)
	id, err := s.Backend.Enqueue(r.Context(), req)
	if err != nil {
		if sub != nil {
			s.Broker.Unsubscribe(sub)
		}
		code := http.StatusInternalServerError
		if errors.Is(err, lock.ErrLocked) || errors.Is(err, deploy.ErrEnvNotPrivate) {
			code = http.StatusConflict
		} else if exitcode.Of(err) == exitcode.Usage {
			code = http.StatusBadRequest
		}
		writeError(w, code, err.Error())
		return
	}
	if !follow {
		writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": "accepted"})
		return
	}
	s.stream(w, r, sub, id)
}
