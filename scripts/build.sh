#!/usr/bin/env bash
# Builds bin/slipway, stamped with the checkout's version.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
version="$(git describe --always --dirty 2>/dev/null || echo dev)"
go build -ldflags "-X github.com/slipway-dev/slipway/internal/cli.Version=$version" -o bin/slipway ./cmd/slipway
