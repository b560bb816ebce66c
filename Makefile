# slipway: build, test, demo. `make demo` and `make test` do all set-up.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/slipway-dev/slipway/internal/cli.Version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: build test demo bench lint setup e2e fuzz

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/slipway ./cmd/slipway

setup:
	./scripts/setup.sh

# Every test: unit and end-to-end on this machine, then the e2e scenarios
# on real systemd VMs.
test: setup
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory e2e

demo: setup build
	./scripts/demo.sh

# The issues' figures: deploy engine (no-op, overhead, rollback, reuse) and
# agent (idle cost, forged-webhook flood, push-to-serving), the proxy
# (deploys under load, latency, throughput), data snapshots
# of a 1 GiB tree against tar | zstd, then the packages' micro-benchmarks.
bench: setup
	$(GO) test -run '^$$' -bench 'Noop|DeployOverhead|Rollback|NodeReuse|ReconfigureNode' -benchtime 7x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'Agent' -benchtime 2x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'Proxy' -benchtime 1x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'DataSnapshot|DataRestore|TarZstd' -benchtime 1x -timeout 20m ./internal/snapshot/
	$(GO) test -run '^$$' -bench . -timeout 10m $$($(GO) list ./internal/... | grep -v /internal/snapshot)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s ./internal/config/
	$(GO) test -run '^$$' -fuzz FuzzReadEnvFile -fuzztime 30s ./internal/config/

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt: not formatted:" >&2; echo "$$out" >&2; exit 1; fi
	$(GO) vet ./...
	@if command -v golangci-lint >/dev/null; then golangci-lint run --build-tags e2e ./...; \
	else $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0 run --build-tags e2e ./...; fi

# The systemd scenarios on Debian VMs booted with systemd-nspawn (root
# needed). The VMs' base rootfs is built once and cached in
# $${SLIPWAY_E2E_CACHE:-/var/cache/slipway-e2e}.
e2e: setup
	$(GO) test -tags e2e -count=1 -timeout 30m -v ./e2e/
