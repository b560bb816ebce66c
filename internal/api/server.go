// Package api is the agent's HTTP API (docs/agent.md): JSON over HTTP, every
// route but /health and the webhooks behind a bearer token, request bodies
// limited, timeouts set. The same handler serves the agent's unix socket,
// where the socket's 0600 mode is the authentication.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/internal/deploy"
	"github.com/slipway-dev/slipway/internal/events"
	"github.com/slipway-dev/slipway/internal/ledger"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Request asks the agent for a deploy or a rollback.
type Request struct {
	Kind   string // ledger.KindDeploy or ledger.KindRollback
	Ref    string
	Commit string
	Force  bool
	To     string
	// RestoreData (a rollback) restores the pre-deploy data snapshot of the
	// release it leaves, when that release ran a migration.
	RestoreData bool
	Trigger     string
	Actor       string
}

// Backend is what the API needs of the agent.
type Backend interface {
	// Status is `slipway status --json` plus the agent's own state.
	Status(ctx context.Context) (any, error)
	// Enqueue accepts a deploy or rollback and returns the ledger id to follow.
	Enqueue(ctx context.Context, r Request) (int64, error)
	// Wait blocks until job id ends; ok is false when ctx ended first.
	Wait(ctx context.Context, id int64) (s deploy.Summary, ok bool)
}

// Server holds what the handlers use.
type Server struct {
	Backend  Backend
	Ledger   *ledger.DB
	Broker   *events.Broker
	Metrics  http.Handler
	Webhooks map[string]http.Handler // by provider: github, gitlab, gitea
	// Pages is the dashboard (internal/web), behind its own sign-in, on
	// PageRoutes; SignedIn says whether a request comes from a browser
	// signed in to it, which may read the feed.
	Pages      http.Handler
	PageRoutes []string
	SignedIn   func(*http.Request) bool
	LogDir     string // logs/deploys
	Version    string
	Started    time.Time
	// tokenSum is the SHA-256 of the bearer token: comparing digests in
	// constant time leaks neither the token nor its length.
	tokenSum [32]byte
}

// New returns a Server that requires token on authenticated routes.
func New(token []byte) *Server {
	return &Server{tokenSum: sha256.Sum256(token), Started: time.Now()}
}

type ctxKey int

const trustedKey ctxKey = 0

// ConnContext marks requests that came over the unix socket as trusted:
// only the socket's owner (and root) can connect to it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(*net.UnixConn); ok {
		return context.WithValue(ctx, trustedKey, true)
	}
	return ctx
}

// HTTPServer wraps h with the timeouts every listener of the agent uses.
func HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second, // streams lift it per request
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       ConnContext,
	}
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	for provider, h := range s.Webhooks {
		mux.Handle("/webhook/"+provider, h)
	}
	if s.Pages != nil {
		for _, p := range s.PageRoutes {
			mux.Handle(p, s.Pages)
		}
	}
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.authenticated(h)) }
	auth("GET /status", s.status)
	auth("GET /deploys", s.listDeploys)
	auth("GET /deploys/{id}", s.getDeploy)
	auth("GET /deploys/{id}/log", s.getDeployLog)
	auth("POST /deploys", s.postDeploy)
	auth("POST /rollback", s.postRollback)
	mux.Handle("GET /feed/events", s.authenticatedOrSignedIn(s.feed))
	auth("GET /commits", s.listCommits)
	auth("POST /commits", s.postCommit)
	auth("GET /registry/vms", s.listVMs)
	auth("POST /registry/vms", s.postVM)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.authenticated(s.Metrics.ServeHTTP))
	}
	// Anything else needs the token too, so the API's shape is not
	// disclosed to anonymous callers.
	mux.Handle("/", s.authenticated(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such route")
	}))
	return mux
}

func (s *Server) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if trusted, _ := r.Context().Value(trustedKey).(bool); !trusted {
			token, ok := bearerToken(r.Header.Get("Authorization"))
			sum := sha256.Sum256([]byte(token))
			if !ok || subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="slipway"`)
				writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		}
		h(w, r)
	})
}

// authenticatedOrSignedIn is authenticated, or a dashboard's session.
func (s *Server) authenticatedOrSignedIn(h http.HandlerFunc) http.Handler {
	withToken := s.authenticated(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.SignedIn != nil && r.Header.Get("Authorization") == "" && s.SignedIn(r) {
			h(w, r)
			return
		}
		withToken.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an Authorization header in the Bearer
// scheme, whose name is case-insensitive (RFC 9110, 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors; an empty body is an empty object.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, errEOF) {
		return true
	}
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body over 1 MiB")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}
