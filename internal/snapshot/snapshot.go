// Package snapshot takes and restores restore points. A Provider is one way
// of doing it: Data archives the app's shared/ paths (built in), Command
// runs the operator's own VM or volume snapshot commands. Every provider
// passes the same test suite (snapshottest).
package snapshot

import (
	"context"
	"errors"
)

// The labels slipway gives the snapshots it takes during a deploy.
const (
	LabelPreDeploy  = "pre-deploy"
	LabelPostDeploy = "post-deploy"
	LabelManual     = "manual"
)

// Request describes the snapshot to take.
type Request struct {
	Label  string
	Tags   []string
	App    string
	Commit string // the app's commit the snapshot belongs to
	VMID   string
}

// Taken is a snapshot a provider made.
type Taken struct {
	ID   string
	Size int64 // bytes; 0 when the provider does not know
}

// Provider takes, restores and deletes snapshots.
type Provider interface {
	// Name is how the ledger names the provider: "data" or "command".
	Name() string
	// Create takes a snapshot.
	Create(ctx context.Context, r Request) (Taken, error)
	// Restore brings the snapshot back. A failed restore changes nothing.
	Restore(ctx context.Context, id string) error
	// Delete removes the snapshot; ErrNotSupported when the provider cannot.
	Delete(ctx context.Context, id string) error
}

var (
	// ErrNotFound is a snapshot id the provider does not have.
	ErrNotFound = errors.New("snapshot not found")
	// ErrNotSupported is an operation the provider was not given a command for.
	ErrNotSupported = errors.New("not supported by this provider")
	// ErrCorrupt is an archive whose contents do not match its manifest.
	ErrCorrupt = errors.New("snapshot archive is corrupt")
)
