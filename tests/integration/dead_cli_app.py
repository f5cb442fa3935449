"""The app `corq dead` tests load with ``--app`` (settings from CORQ_* variables)."""

from __future__ import annotations

import corq


def declare(app: corq.App) -> None:
    @app.task(name="mail.send")
    async def send(to: str, times: int = 1) -> str:
        if to.endswith("@bad"):
            raise ValueError(f"bad address {to}")
        return f"{to} x{times}"

    @app.task(name="img.resize")
    async def resize(width: int) -> int:
        raise KeyError("width")


app = corq.App()
declare(app)
