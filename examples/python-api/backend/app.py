#!/usr/bin/env python3
"""The board API: a tiny stdlib-only HTTP backend.

  GET /health       200 {"status":"ok","version":APP_VERSION}   (no auth)
  GET /version      APP_VERSION as text/plain                  (no auth)
  GET /board/tasks  200 {"tasks":[...]} with "Authorization: Bearer $VERS_AUTH_TOKEN",
                    401 {"error":"unauthorized"} without it

Environment: PORT (default 8000), HOST (default 127.0.0.1), APP_VERSION
(default "dev"), DATA_DIR (default "data"; the database is DATA_DIR/board.db),
VERS_AUTH_TOKEN (required: the server refuses to start without it).
"""
import hmac
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_VERSION = os.environ.get("APP_VERSION") or "dev"
DATA_DIR = os.environ.get("DATA_DIR") or "data"
DB_PATH = os.path.join(DATA_DIR, "board.db")
TOKEN = os.environ.get("VERS_AUTH_TOKEN", "")


def log(line):
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stdout.write(f"{ts} {line}\n")
    sys.stdout.flush()


def authorized(header):
    if not header or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer "):].strip().encode("utf-8")
    return hmac.compare_digest(given, TOKEN.encode("utf-8"))


def load_tasks():
    # Read-only: never create an empty database when migrations did not run.
    uri = "file:" + os.path.abspath(DB_PATH) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, title, done, created_at FROM tasks ORDER BY id").fetchall()
        return [
            {"id": r["id"], "title": r["title"], "done": bool(r["done"]), "created_at": r["created_at"]}
            for r in rows
        ]
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "board"

    def version_string(self):
        return self.server_version
    protocol_version = "HTTP/1.1"

    def send_body(self, status, body, content_type="application/json"):
        if not isinstance(body, bytes):
            body = (json.dumps(body, separators=(",", ":")) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.send_body(200, {"status": "ok", "version": APP_VERSION})
        elif path == "/version":
            self.send_body(200, APP_VERSION.encode("utf-8"), "text/plain; charset=utf-8")
        elif path == "/board/tasks":
            if not authorized(self.headers.get("Authorization")):
                self.send_body(401, {"error": "unauthorized"})
                return
            try:
                tasks = load_tasks()
            except sqlite3.Error as e:
                log(f"error: reading {DB_PATH}: {e}")
                self.send_body(500, {"error": "database unavailable"})
                return
            self.send_body(200, {"tasks": tasks})
        else:
            self.send_body(404, {"error": "not found"})

    do_HEAD = do_GET

    def log_request(self, code="-", size="-"):
        # One line per request, on stdout, flushed.
        code = getattr(code, "value", code)
        log(f'{self.client_address[0]} "{self.requestline}" {code}')

    def log_message(self, fmt, *args):
        log(f"{self.client_address[0]} {fmt % args}")


def main():
    if not TOKEN.strip():
        print(
            "board: refusing to start: VERS_AUTH_TOKEN is unset or empty "
            "(without it every caller would be served)",
            file=sys.stderr,
            flush=True,
        )
        return 1

    host = os.environ.get("HOST") or "127.0.0.1"
    try:
        port = int(os.environ.get("PORT") or "8000")
    except ValueError:
        print(f"board: invalid PORT {os.environ.get('PORT')!r}", file=sys.stderr, flush=True)
        return 1

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        print(f"board: cannot listen on {host}:{port}: {e}", file=sys.stderr, flush=True)
        return 1

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    log(f"board {APP_VERSION} listening on http://{host}:{port} (data: {os.path.abspath(DB_PATH)})")

    while not stop.wait(0.2):
        pass
    server.shutdown()
    thread.join()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
