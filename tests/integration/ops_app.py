"""The app the CLI tests of the runtime configuration name with ``--app``
(tests/integration/test_cli_ops.py configures its broker and prefix per test)."""

from __future__ import annotations

import corq

app = corq.App()


@app.task(concurrency=8, rate_limit="100/s")
async def send(tenant: str, subject: str = "hi") -> str:
    return f"{tenant}:{subject}"


@app.task(key=lambda account, **_: account, queue="billing")
async def charge(account: str, cents: int) -> int:
    return cents
