"""`python -m bench._prober URL`: asks `GET URL` every 20 ms until its standard input closes.

One request at a time on one kept-alive connection; a tick missed while an answer is awaited is
skipped, not sent in a burst. Prints one JSON line per answer, `[wall_time_sent, seconds]`, and
exits when its standard input reaches its end (the benchmark closes it). A process of its own,
so that the benchmark's threads never delay it.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

INTERVAL = 0.020


def main(url: str) -> None:
    stop = threading.Event()

    def wait_for_end() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_end, daemon=True).start()
    with httpx.Client(timeout=30) as client:
        client.get(url)  # the connection is open before the first sample
        next_at = time.monotonic()
        while not stop.is_set():
            sent, started = time.time(), time.perf_counter()
            client.get(url).raise_for_status()
            print(json.dumps([sent, time.perf_counter() - started]), flush=True)
            next_at += INTERVAL
            now = time.monotonic()
            if next_at < now:
                next_at = now + INTERVAL
            stop.wait(next_at - now)


if __name__ == "__main__":
    main(sys.argv[1])
