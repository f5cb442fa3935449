"""A task behind a circuit breaker for the end-to-end test (tests/e2e/test_breakers.py): it
fails while the file ``down`` exists in the directory it is given (the partner it calls is
down), else succeeds. Its broker and prefix come from CORQ_URL / CORQ_PREFIX."""

from __future__ import annotations

import os

import corq

app = corq.App()


@app.task(retries=0, breaker=corq.Breaker(failures=3, window=60, reset=2))
def call_partner(state_dir: str, n: int) -> int:
    if os.path.exists(os.path.join(state_dir, "down")):
        raise ConnectionError("the partner is down")
    return n
