#!/usr/bin/env python3
"""The board worker: every second, writes $DATA_DIR/worker.heartbeat.

The heartbeat is one JSON line {"version": APP_VERSION, "time": ..., "pid": ...},
replaced atomically (temp file + rename). SIGTERM/SIGINT stop it cleanly.
"""
import json
import os
import signal
import sys
import threading
import time

APP_VERSION = os.environ.get("APP_VERSION") or "dev"
DATA_DIR = os.environ.get("DATA_DIR") or "data"
HEARTBEAT = os.path.join(DATA_DIR, "worker.heartbeat")
INTERVAL = 1.0


def log(line):
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{ts} worker: {line}", flush=True)


def beat():
    now = time.time()
    record = {
        "version": APP_VERSION,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "unix": round(now, 3),
        "pid": os.getpid(),
    }
    tmp = f"{HEARTBEAT}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
    os.replace(tmp, HEARTBEAT)


def main():
    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"received {signal.Signals(signum).name}, stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    os.makedirs(DATA_DIR, exist_ok=True)
    log(f"{APP_VERSION} started, heartbeat {os.path.abspath(HEARTBEAT)}")
    failures = 0
    while not stop.is_set():
        try:
            beat()
            failures = 0
        except OSError as e:
            failures += 1
            log(f"error: writing heartbeat: {e}")
            if failures >= 30:
                print(f"worker: giving up after {failures} failed heartbeats", file=sys.stderr, flush=True)
                return 1
        stop.wait(INTERVAL)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
