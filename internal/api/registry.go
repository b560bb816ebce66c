package api

import (
	"net/http"
	"strings"

	"github.com/slipway-dev/slipway/internal/ledger"
)

func (s *Server) listCommits(w http.ResponseWriter, r *http.Request) {
	snaps, err := s.Ledger.Snapshots(r.Context(), 500)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, snaps)
}

// postCommit records a restore point taken outside slipway, such as a VM
// snapshot an orchestrator took, with its id.
func (s *Server) postCommit(w http.ResponseWriter, r *http.Request) {
	var body struct {
		CommitID string   `json:"commitId"`
		VMID     string   `json:"vmId"`
		Label    string   `json:"label"`
		Agent    string   `json:"agent"`
		Tags     []string `json:"tags"`
	}
	if !decode(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.CommitID) == "" || len(body.CommitID) > 200 || len(body.Label) > 500 || len(body.Tags) > 50 {
		writeError(w, http.StatusBadRequest, "commitId is required (at most 200 characters; label 500; 50 tags)")
		return
	}
	id, err := s.Ledger.AddSnapshot(r.Context(), ledger.Snapshot{
		CommitID: body.CommitID, VMID: body.VMID, Label: body.Label, Agent: body.Agent, Tags: body.Tags,
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"id": id})
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	vms, err := s.Ledger.VMs(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, vms)
}

func (s *Server) postVM(w http.ResponseWriter, r *http.Request) {
	var vm ledger.VM
	if !decode(w, r, &vm) {
		return
	}
	if strings.TrimSpace(vm.Name) == "" || len(vm.Name) > 200 {
		writeError(w, http.StatusBadRequest, "name is required (at most 200 characters)")
		return
	}
	vm.Seen = timeNow()
	if err := s.Ledger.UpsertVM(r.Context(), vm); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, vm)
}
