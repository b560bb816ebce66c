#!/usr/bin/env bash
# Every test, with all set-up, on a fresh Debian machine that has Go: the
# packages the tests need (scripts/setup.sh --tests, as root), go vet, the unit and
# end-to-end tests on this machine under the race detector, then the e2e
# scenarios on Debian VMs with systemd as PID 1 (root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh --tests
go vet ./...
go vet -tags e2e ./e2e/
go test -race -count=1 -timeout 20m ./...
go test -tags e2e -count=1 -timeout 30m -v ./e2e/
