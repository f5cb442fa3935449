"""Shared CLI pieces: loading the user's app, the --url option, running coroutines."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from corq import App, BrokerError, CorqError

T = TypeVar("T")

url_option = click.option(
    "--url",
    envvar="CORQ_URL",
    default=None,
    metavar="URL",
    help="Broker URL [env CORQ_URL; default sqlite:///corq.db].",
)
app_option = click.option(
    "--app",
    "app_path",
    default=None,
    metavar="MODULE:ATTR",
    help="Your app (e.g. myproj.tasks:app): its settings are used and task args are validated.",
)


def load_app(path: str) -> App:
    """Import `module:attribute` (the user's own code, named on the command line)."""
    module_name, _, attr = path.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{path!r} is not a corq.App (found {type(app).__name__})")
    return app


def make_app(app_path: str | None, url: str | None) -> App:
    if app_path:
        app = load_app(app_path)
        if url:
            app.configure(url=url)
        return app
    return App(url)


def run(app: App, make: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine for a CLI command and turn corq errors into clean exits."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await app.aclose()

    try:
        return asyncio.run(main())
    except BrokerError as exc:
        raise click.ClickException(f"broker unreachable at {app.settings.url}: {exc}") from exc
    except CorqError as exc:
        raise click.ClickException(str(exc)) from exc


def parse_queues(value: str | None) -> list[str] | None:
    """`--queues a,b` as a list; None when not given (or empty)."""
    queues = [q.strip() for q in (value or "").split(",") if q.strip()]
    return queues or None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def parse_json(value: str | None, what: str, kind: type) -> Any:
    import json

    if value is None:
        return kind()
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(data, kind):
        raise click.BadParameter(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return data
