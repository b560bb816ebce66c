#!/usr/bin/env bash
# The demo: deploy the Python example with slipway's process manager from a
# local git repository, show it serving, then push a broken commit and watch
# slipway roll it back by itself. Everything lives in a temp dir and is
# stopped at the end.
#
# It does its own set-up on a fresh Debian machine that has Go: the packages
# it needs (scripts/setup.sh, as root) and the build (scripts/build.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
slipway="$here/bin/slipway"

work="$(mktemp -d /tmp/slipway-demo.XXXXXX)"
port="${DEMO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
token="demo-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
cleanup() {
	for pidfile in "$work"/root/run/*.pid; do
		[ -f "$pidfile" ] || continue
		pgid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pgid"])' "$pidfile" 2>/dev/null || true)"
		[ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null || true
	done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "a git repository with the example app (examples/python-api)"
cp -r "$here/examples/python-api" "$work/src"
rm -rf "$work/src/.venv" "$work/src/backend/.venv"
git -C "$work/src" init -q -b main
git -C "$work/src" add -A
git -C "$work/src" -c user.name=demo -c user.email=demo@example.com commit -q -m "board: first version"
sed -e "s|^repo:.*|repo: $work/src|" -e "s|^root:.*|root: $work/root|" -e "s|8000|$port|g" \
	-e "s|timeout: 20s|timeout: 5s|" "$work/src/slipway.yml" >"$work/slipway.yml"
install -d -m 0700 "$work/root/env"
printf 'VERS_AUTH_TOKEN=%s\nPORT=%s\nDATA_DIR=../data\n' "$token" "$port" >"$work/root/env/backend.env"
printf 'VERS_AUTH_TOKEN=%s\nDATA_DIR=../data\n' "$token" >"$work/root/env/worker.env"
chmod 0600 "$work/root/env/"*.env
export SLIPWAY_CONFIG="$work/slipway.yml"
echo "config: $SLIPWAY_CONFIG, root: $work/root, port $port"

say "check the host"
run "$slipway" check || true

say "first deploy"
run "$slipway" deploy

say "it serves"
run curl -s "http://127.0.0.1:$port/health"; echo
printf '$ curl /board/tasks (no token) -> '; curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/board/tasks"
printf '$ curl /board/tasks (token)    -> '; curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/board/tasks"; echo

say "deploy again: nothing to do, no restart"
run "$slipway" deploy

say "push a broken commit: /health answers 500"
sed -i 's/self.send_body(200, {"status": "ok"/self.send_body(500, {"status": "broken"/' "$work/src/backend/app.py"
git -C "$work/src" -c user.name=demo -c user.email=demo@example.com commit -q -am "board: break health"
set +e
run "$slipway" deploy
code=$?
set -e
echo "(exit code $code: the deploy failed and was rolled back)"

say "the old version still serves"
run curl -s "http://127.0.0.1:$port/health"; echo

say "the ledger"
run "$slipway" history
say "status"
run "$slipway" status
