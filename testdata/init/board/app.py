"""board: a task board API on SQLite. The worker (worker.py) marks tasks
done. Every call but /health needs the bearer token in VERS_AUTH_TOKEN."""

import json
import os
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("VERS_AUTH_TOKEN", "")
if not TOKEN:
    sys.exit("VERS_AUTH_TOKEN is not set: refusing to serve unauthenticated")
DATA_DIR = os.environ.get("DATA_DIR", "data")
DB = os.path.join(DATA_DIR, "board.db")


def connect():
    os.makedirs(DATA_DIR, exist_ok=True)
    db = sqlite3.connect(DB, timeout=5)
    db.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0)")
    return db


class Handler(BaseHTTPRequestHandler):
    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") == "Bearer " + TOKEN:
            return True
        self.send(401, {"error": "unauthorized"})
        return False

    def do_GET(self):
        if self.path == "/health":
            return self.send(200, {"ok": True})
        if not self.authorized():
            return
        if self.path == "/tasks":
            with connect() as db:
                rows = db.execute("SELECT id, title, done FROM tasks ORDER BY id").fetchall()
            return self.send(200, {"tasks": [{"id": i, "title": t, "done": bool(d)} for i, t, d in rows]})
        self.send(404, {"error": "not found"})

    def do_POST(self):
        if not self.authorized():
            return
        if self.path != "/tasks":
            return self.send(404, {"error": "not found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with connect() as db:
            cur = db.execute("INSERT INTO tasks (title) VALUES (?)", (str(body.get("title", "")),))
        self.send(201, {"id": cur.lastrowid})

    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    connect().close()
    print(f"board listening on {port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
