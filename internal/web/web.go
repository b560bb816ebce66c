// Package web is the agent's dashboard: server-rendered pages on the API's
// listener, behind a sign-in with the API token (an operator) or the
// viewer token (read-only). A session is a random id in an HttpOnly,
// SameSite=Strict cookie, kept in memory for TTL; every form that changes
// something carries the session's CSRF token. Signed out, a page shows only
// the app's name and "Sign in for status". docs/dashboard.md is the
// contract.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/slipway-dev/slipway/internal/deploy"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// pages are the templates, parsed when a page is first rendered: every
// slipway command links this package, and most render no page.
var pages = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Funcs(template.FuncMap{
		"short": func(s string) string {
			if len(s) > 7 {
				return s[:7]
			}
			return s
		},
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"secs": func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) },
		"size": deploy.HumanBytes,
		"add":  func(a, b int) int { return a + b },
		// The durations chart's legend: six steps a row below the columns.
		"legendY":      func(i int) int { return 215 + i/6*18 },
		"legendHeight": func(l []legendItem) int { return 215 + (len(l)+5)/6*18 },
	}).ParseFS(templateFS, "templates/*.html"))
})

// Roles a session has.
const (
	Operator = "operator" // signed in with the API token: may change things
	Viewer   = "viewer"   // signed in with the viewer token: sees everything
)

// Defaults.
const (
	DefaultTTL = 12 * time.Hour
	// SignInFailures failed sign-ins from one address within a minute
	// make it wait.
	SignInFailures = 5
	CookieName     = "slipway_session"
)

// Server serves the pages.
type Server struct {
	App string
	// Status is the host's status as `slipway status --json` prints it.
	Status func(ctx context.Context) (any, error)
	Ledger Ledger // the history and snapshot pages; none without it
	// Backend runs the actions and reads the services' logs; without it
	// the pages change nothing.
	Backend Backend
	// Fleet is the fleet's screens, for `slipway fleet ui`.
	Fleet FleetBackend
	TTL   time.Duration
	Now   func() time.Time

	operator, viewer [32]byte // SHA-256 of the tokens; a zero viewer: none
	hasViewer        bool

	mu       sync.Mutex
	sessions map[string]*Session
	failures map[string][]time.Time // failed sign-ins by client address
}

// Session is one signed-in browser.
type Session struct {
	Role string
	// Actor is who the ledger says did what this session did: "web:" and
	// the name given at sign-in, or the role.
	Actor   string
	CSRF    string
	Expires time.Time
}

// New returns a Server that signs in with token (an operator) or, when
// not empty, viewerToken (a viewer).
func New(app string, token, viewerToken []byte) *Server {
	s := &Server{App: app, TTL: DefaultTTL, Now: time.Now, operator: sha256.Sum256(token),
		sessions: map[string]*Session{}, failures: map[string][]time.Time{}}
	if len(viewerToken) > 0 {
		s.viewer, s.hasViewer = sha256.Sum256(viewerToken), true
	}
	return s
}

// Handler returns the pages' routes; the API mounts them beside its own.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /signin", s.signInPage)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("POST /signout", s.signOut)
	if s.Ledger != nil {
		mux.HandleFunc("GET /history", s.history)
		mux.HandleFunc("GET /history/{id}", s.deploy)
		mux.HandleFunc("GET /snapshots", s.snapshots)
	}
	if s.Backend != nil {
		mux.HandleFunc("GET /services", s.services)
	}
	if s.Fleet != nil {
		mux.HandleFunc("GET /fleet", s.fleetHome)
		mux.HandleFunc("GET /fleet/rollouts/{id}", s.fleetRollout)
	}
	if s.Backend != nil || s.Fleet != nil {
		mux.HandleFunc("POST /actions/{action}", s.act)
	}
	assets, _ := fs.Sub(assetFS, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/assets/") {
			w.Header().Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// Routes are the patterns Handler serves, for a mux that mounts it.
var Routes = []string{"GET /{$}", "GET /signin", "POST /signin", "POST /signout", "GET /history", "GET /history/{id}",
	"GET /snapshots", "GET /services", "POST /actions/{action}", "GET /assets/"}

// signedIn is the request's session; without one, the browser is sent to
// sign in.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (*Session, bool) {
	sess, ok := s.SessionOf(r)
	if !ok {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
	}
	return sess, ok
}

// SignedIn says whether r comes from a signed-in browser: the API lets
// such a browser read its feed.
func (s *Server) SignedIn(r *http.Request) bool {
	_, ok := s.SessionOf(r)
	return ok
}

// SessionOf is the request's live session, if it has one.
func (s *Server) SessionOf(r *http.Request) (*Session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[c.Value]
	if !ok {
		return nil, false
	}
	if !s.Now().Before(sess.Expires) {
		delete(s.sessions, c.Value)
		return nil, false
	}
	return sess, true
}

// CheckCSRF says whether a form posted in sess carries its CSRF token.
func CheckCSRF(sess *Session, r *http.Request) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}

type page struct {
	App string
	// FleetUI: the pages are `slipway fleet ui`'s.
	FleetUI bool
	// Refresh: the page changes by itself (a rollout runs), and reloads.
	Refresh bool
	Session *Session
	Status  *status
	Error   string
}

// pager is what a template is given: a page, or a page with more.
type pager interface {
	setSite(app string, fleetUI bool)
}

func (p *page) setSite(app string, fleetUI bool) { p.App, p.FleetUI = app, fleetUI }

func (s *Server) render(w http.ResponseWriter, code int, name string, v pager) {
	v.setSite(s.App, s.Fleet != nil && s.Status == nil)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_ = pages().ExecuteTemplate(w, name, v)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.SessionOf(r)
	if !ok {
		s.render(w, http.StatusOK, "banner.html", &page{})
		return
	}
	if s.Status == nil {
		http.Redirect(w, r, "/fleet", http.StatusSeeOther)
		return
	}
	st, err := s.status(r.Context())
	if err != nil {
		s.render(w, http.StatusInternalServerError, "home.html", &page{Session: sess, Error: err.Error()})
		return
	}
	s.render(w, http.StatusOK, "home.html", &page{Session: sess, Status: st})
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.SessionOf(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "signin.html", &page{})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	client := clientAddr(r)
	if wait := s.locked(client); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.render(w, http.StatusTooManyRequests, "signin.html", &page{Error: "Too many failed sign-ins: wait a minute."})
		return
	}
	sum := sha256.Sum256([]byte(r.PostFormValue("token")))
	role := ""
	switch {
	case subtle.ConstantTimeCompare(sum[:], s.operator[:]) == 1:
		role = Operator
	case s.hasViewer && subtle.ConstantTimeCompare(sum[:], s.viewer[:]) == 1:
		role = Viewer
	default:
		s.failed(client)
		s.render(w, http.StatusUnauthorized, "signin.html", &page{Error: "That token is not right."})
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if len(name) > 64 || strings.ContainsFunc(name, func(c rune) bool { return !unicode.IsPrint(c) }) {
		s.render(w, http.StatusBadRequest, "signin.html", &page{Error: "Your name: at most 64 printable characters."})
		return
	}
	if name == "" {
		name = role
	}
	id, csrf := randomID(), randomID()
	s.mu.Lock()
	delete(s.failures, client)
	for k, old := range s.sessions { // the expired go, so that the map stays small
		if !s.Now().Before(old.Expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[id] = &Session{Role: role, Actor: "web:" + name, CSRF: csrf, Expires: s.Now().Add(s.TTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: overTLS(r), MaxAge: int(s.TTL.Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.SessionOf(r)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !CheckCSRF(sess, r) {
		http.Error(w, "the form lacks its CSRF token", http.StatusForbidden)
		return
	}
	c, _ := r.Cookie(CookieName)
	s.mu.Lock()
	delete(s.sessions, c.Value)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: overTLS(r), MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// locked is how long client must wait before it may try again.
func (s *Server) locked(client string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	recent := s.failures[client][:0]
	for _, t := range s.failures[client] {
		if now.Sub(t) < time.Minute {
			recent = append(recent, t)
		}
	}
	s.failures[client] = recent
	if len(recent) < SignInFailures {
		return 0
	}
	return time.Minute - now.Sub(recent[0])
}

func (s *Server) failed(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	for k, ts := range s.failures { // addresses whose failures are a minute old go
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= time.Minute {
			delete(s.failures, k)
		}
	}
	s.failures[client] = append(s.failures[client], now)
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// overTLS says whether the browser reached us over TLS: directly, or
// through a proxy that says so.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// status is what the banner shows of the host's status.
type status struct {
	Current   *release  `json:"current"`
	Safe      string    `json:"safe_commit"`
	RemoteTip string    `json:"remote_tip"`
	Behind    int       `json:"behind"`
	Healthy   bool      `json:"healthy"`
	HealthErr string    `json:"health_error"`
	Services  []service `json:"services"`
	Good      []release `json:"good_releases"`
	Agent     struct {
		Running int64 `json:"running_deploy"`
		Waiting int64 `json:"waiting_deploy"`
	} `json:"agent"`
	Lock *struct {
		Held, Frozen bool
		Holder       struct {
			User, Message string
			Key           string
		}
	} `json:"lock"`
	Last *struct {
		ID      int64     `json:"id"`
		Kind    string    `json:"kind"`
		Commit  string    `json:"commit"`
		Outcome string    `json:"outcome"`
		Started time.Time `json:"started"`
	} `json:"last_deploy"`
}

// release names a release, as status reports it.
type release struct {
	Name, Commit, Version string
}

// RollbackTo are the kept good releases a rollback may go to: all but
// the live one.
func (st *status) RollbackTo() []release {
	var out []release
	for _, g := range st.Good {
		if st.Current == nil || g.Commit != st.Current.Commit {
			out = append(out, g)
		}
	}
	return out
}

// service is one service's state, as status reports it.
type service struct {
	Name     string    `json:"name"`
	Running  bool      `json:"running"`
	PID      int       `json:"pid"`
	Since    time.Time `json:"since"`
	Detail   string    `json:"detail"`
	Restarts int       `json:"restarts"`
	Stopped  bool      `json:"stopped"`
}

func (s *Server) status(ctx context.Context) (*status, error) {
	v, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var st status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
