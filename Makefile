# slipway: build, test, demo, bench. The demo and the tests are scripts
# (scripts/demo.sh, scripts/test.sh) that do all set-up, make included;
# these targets are shorthands for them.
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin

.PHONY: build test demo bench lint setup e2e fuzz

build:
	./scripts/build.sh

setup:
	./scripts/setup.sh

# Every test: unit and end-to-end on this machine, then the e2e scenarios
# on real systemd VMs.
test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

# slipway's figures: deploy engine (no-op, overhead, rollback, reuse) and
# agent (idle cost, forged-webhook flood, push-to-serving), the proxy
# (deploys under load; throughput and latency against direct, and against
# kamal-proxy when $$SLIPWAY_BENCH_KAMAL_PROXY names one), data snapshots
# of a 1 GiB tree against tar | zstd, the dashboard's first paints, page
# weights and step-to-screen delay (in Chromium), a fleet rollout over 50 VMs
# ($$SLIPWAY_FLEET_VMS), then the packages' micro-benchmarks. Its set-up is
# the tests' (Chromium included), so the dashboard's figures are measured
# rather than skipped on a fresh machine.
bench:
	./scripts/setup.sh --tests
	$(GO) test -run '^$$' -bench 'Noop|DeployOverhead|Rollback|NodeReuse|ReconfigureNode' -benchtime 7x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'FailingHealth' -benchtime 3x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'Agent' -benchtime 2x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'Proxy' -benchtime 1x -timeout 20m ./cmd/slipway/
	$(GO) test -run '^$$' -bench 'DataSnapshot|DataRestore|TarZstd' -benchtime 1x -timeout 20m ./internal/snapshot/
	SLIPWAY_WEB_FIGURES=1 $(GO) test -count=1 -run TestDashboardFigures -v ./internal/web/ | grep -E 'figure|^(--- |ok|FAIL)'
	$(GO) test -count=1 -run TestDashboardActions -v ./cmd/slipway/ | grep -E 'figure|^(--- |ok|FAIL)'
	SLIPWAY_FLEET_BENCH=1 $(GO) test -tags e2e -count=1 -run TestFleetFigures -v -timeout 30m ./e2e/ | grep -E 'figure|^(--- |ok|FAIL)' 
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
