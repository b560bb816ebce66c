#!/usr/bin/env python3
"""Apply the numbered SQL migrations in migrations/ to $DATA_DIR/board.db.

Each file NNNN_name.sql is applied at most once, inside a transaction, and
recorded in the schema_migrations table, so running this again is a no-op.
On a SQL error the transaction is rolled back, the error is printed on stderr
and the exit status is 1.
"""
import os
import re
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIGRATIONS_DIR = os.path.join(HERE, "migrations")
NAME_RE = re.compile(r"^(\d+)_[A-Za-z0-9_\-]+\.sql$")


def log(msg):
    print(f"migrate: {msg}", flush=True)


def fail(msg):
    print(f"migrate: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main():
    data_dir = os.environ.get("DATA_DIR") or "data"
    os.makedirs(data_dir, exist_ok=True)
    db_path = os.path.join(data_dir, "board.db")

    files = sorted(
        (f for f in os.listdir(MIGRATIONS_DIR) if f.endswith(".sql")),
        key=lambda f: (int(NAME_RE.match(f).group(1)) if NAME_RE.match(f) else -1, f),
    )
    for f in files:
        if not NAME_RE.match(f):
            fail(f"{f}: migration files must be named NNNN_name.sql")

    conn = sqlite3.connect(db_path, isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY,"
            " applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}

        pending = [f for f in files if f[:-4] not in applied]
        if not pending:
            log(f"{db_path}: up to date ({len(applied)} applied)")
            return 0

        for f in pending:
            version = f[:-4]  # safe to quote: NAME_RE allows no quotes
            with open(os.path.join(MIGRATIONS_DIR, f), encoding="utf-8") as fh:
                sql = fh.read()
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            script = (
                "BEGIN;\n"
                f"{sql}\n;\n"
                "INSERT INTO schema_migrations (version, applied_at) "
                f"VALUES ('{version}', '{now}');\n"
                "COMMIT;\n"
            )
            try:
                conn.executescript(script)
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                fail(f"{f}: {e}")
            log(f"applied {f}")
        log(f"{db_path}: {len(pending)} migration(s) applied")
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
