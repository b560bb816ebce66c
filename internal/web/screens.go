package web

import (
	"net/http"
	"time"

	"github.com/slipway-dev/slipway/internal/ledger"
)

// snapshotLimit is how many snapshots the snapshots page lists.
const snapshotLimit = 200

type snapshotsPage struct {
	page
	Snapshots []ledger.Snapshot
}

func (s *Server) snapshots(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	p := &snapshotsPage{page: page{Session: sess}}
	var err error
	if p.Snapshots, err = s.Ledger.Snapshots(r.Context(), snapshotLimit); err != nil {
		p.Error = err.Error()
		s.render(w, http.StatusInternalServerError, "snapshots.html", p)
		return
	}
	s.render(w, http.StatusOK, "snapshots.html", p)
}

// logLines is how much of each service's log the services page shows.
const logLines = 30

type serviceRow struct {
	service
	Uptime time.Duration
	Log    string
}

type servicesPage struct {
	page
	Services []serviceRow
}

func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	p := &servicesPage{page: page{Session: sess}}
	st, err := s.status(r.Context())
	if err != nil {
		p.Error = err.Error()
		s.render(w, http.StatusInternalServerError, "services.html", p)
		return
	}
	for _, sv := range st.Services {
		row := serviceRow{service: sv}
		if sv.Running && !sv.Since.IsZero() {
			row.Uptime = s.Now().Sub(sv.Since).Truncate(time.Second)
		}
		if row.Log, err = s.Backend.ServiceLog(r.Context(), sv.Name, logLines); err != nil {
			row.Log = "(no log: " + err.Error() + ")"
		}
		p.Services = append(p.Services, row)
	}
	s.render(w, http.StatusOK, "services.html", p)
}
