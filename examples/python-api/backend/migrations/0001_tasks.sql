CREATE TABLE tasks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT    NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

INSERT INTO tasks (title, done) VALUES ('Snapshot the VM before deploying', 1);
INSERT INTO tasks (title, done) VALUES ('Check that anonymous calls get 401', 0);
