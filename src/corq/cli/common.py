"""Shared CLI pieces: loading the user's app, the --url option, running coroutines."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import reprlib
import sys
import traceback
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from corq import App, BrokerError, CorqError, Settings

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
    """Import `module:attribute` (the user's own code, named on the command line).

    Every way this can fail is a usage error with one line saying why (exit code 2): a path
    that is not a module name, a module that is missing or raises while importing (where it
    raised is named), an attribute that is missing or not a corq.App. Invalid corq settings
    met while importing are left to `main`, which reports them like any other command's.
    """
    module_name, attr = _split_app_path(path)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _import_user_module(module_name)
    app: object = module
    for part in attr.split("."):
        if not hasattr(app, part):
            raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}")
        app = getattr(app, part)
    if not isinstance(app, App):
        raise click.BadParameter(f"{path!r} is not a corq.App (found {type(app).__name__})")
    return app


def _split_app_path(path: str) -> tuple[str, str]:
    """(module, attribute) of ``module:attribute``; a bare module means its ``app``."""
    module_name, colon, attr = path.partition(":")
    if colon and not attr:
        raise click.BadParameter(
            f"{path!r} names no attribute after ':' (e.g. {module_name or 'myproj.tasks'}:app)"
        )
    attr = attr or "app"
    if module_name.endswith(".py"):
        raise click.BadParameter(
            f"{path!r} names a file: give the module name, {module_name[:-3]}:{attr}"
        )
    if not _dotted_names(module_name) or not _dotted_names(attr):
        raise click.BadParameter(
            f"{path!r} is not module:attribute: give a dotted module name importable from the "
            "working directory and the name of your corq.App in it (e.g. myproj.tasks:app)"
        )
    return module_name, attr


def _dotted_names(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _import_user_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ValidationError as exc:
        if exc.title == Settings.__name__:
            raise  # main() reports invalid settings the same way for every command
        raise click.BadParameter(_import_failure(name, exc)) from exc
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise click.BadParameter(
                f"no module named {name!r} (looked in the working directory and sys.path)"
            ) from exc
        raise click.BadParameter(_import_failure(name, exc)) from exc
    except Exception as exc:  # the user's module may raise anything while importing
        raise click.BadParameter(_import_failure(name, exc)) from exc


def _import_failure(name: str, exc: Exception) -> str:
    """One line: what importing raised, and where in the user's code."""
    lines = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    where = _where(exc)
    return f"importing {name!r} raised {what}" + (f" (at {where})" if where else "")


def _where(exc: BaseException) -> str | None:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_relative(exc.filename)}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if not user:
        return None
    return f"{_relative(user[-1].filename)}:{user[-1].lineno}"


def _relative(filename: str) -> str:
    try:
        return os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting, its environment variable and the value given."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields (heartbeat_s < lease_s)
            problems.append(message)
            continue
        field = str(error["loc"][0])
        given = reprlib.repr(error.get("input"))
        problems.append(f"{field} (CORQ_{field.upper()}): {message}, got {given}")
    return "invalid corq setting: " + "; ".join(problems)


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


def parse_queues(value: str | None) -> dict[str, int] | None:
    """`--queues high=5,default=2,low` as queue name -> weight (1 when not given); None when
    not given (or empty). A weight that is not a positive integer, or a queue named twice,
    is a usage error."""
    queues: dict[str, int] = {}
    for item in (value or "").split(","):
        name, has_weight, weight = (part.strip() for part in item.partition("="))
        if not name and not has_weight:
            continue
        if not name:
            raise click.BadParameter(f"{item.strip()!r} names no queue", param_hint="--queues")
        if name in queues:
            raise click.BadParameter(f"queue {name!r} is named twice", param_hint="--queues")
        queues[name] = _weight(name, weight) if has_weight else 1
    return queues or None


def _weight(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1000:
        raise click.BadParameter(
            f"the weight of queue {name!r} must be an integer from 1 to 1000, got {text!r}",
            param_hint="--queues",
        )
    return int(text)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def parse_json(value: str | None, what: str, kind: type) -> Any:
    """A JSON option's value, of the JSON type asked for; anything else is a usage error."""
    if value is None:
        return kind()
    try:
        data = json.loads(value)
    except ValueError as exc:  # bad JSON, or a number longer than int() takes
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise click.BadParameter(f"{what} is nested too deeply") from exc
    if not isinstance(data, kind):
        raise click.BadParameter(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return data
