"""The deployment files parse, run only real `corq` commands with real options, and query
only metrics a worker and the collector really expose (names taken from a real scrape)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import corq
from corq.cli import cli
from corq.metrics import ClusterMetrics, WorkerMetrics, serve
from corq.testing import run_worker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs" / "deploy.md"
#: What the files' ${CORQ_APP:-...} and $CORQ_APP stand for when nothing sets it.
ENV = {"CORQ_APP": "corq.demo.tasks:app"}
METRIC = re.compile(r"\bcorq_[a-z_]+[a-z]\b")


def substitute(text: str) -> str:
    """Compose / shell variables as they expand with nothing set: the default, or ENV."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: ENV.get(m[1], m[2]), text)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: ENV.get(m[1], m[0]), text)


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose_commands() -> Iterator[list[str]]:
    services = yaml_file(DEPLOY / "docker-compose.yml")["services"]
    for service in services.values():
        command = service.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if command and command[0] == "corq":
            yield [substitute(arg) for arg in command]


def dockerfile_commands() -> Iterator[list[str]]:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            argv = json.loads(line.removeprefix("CMD "))
            if argv[:2] == ["sh", "-c"]:
                argv = shlex.split(substitute(argv[2]))
            yield argv[argv.index("corq") :]


def docs_commands() -> Iterator[list[str]]:
    """`corq ...` lines of the shell blocks in docs/deploy.md (comments cut)."""
    in_block = False
    for line in DOCS.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = stripped == "```sh"
            continue
        if in_block and stripped.startswith("corq "):
            yield shlex.split(stripped, comments=True)


def all_commands() -> list[list[str]]:
    return [*compose_commands(), *dockerfile_commands(), *docs_commands()]


def test_every_deploy_file_parses() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "corq-dashboard.json").read_text())
    assert dashboard["panels"]
    for name in ("docker-compose.yml", "prometheus.yml", "keda-scaledobject.yaml"):
        assert isinstance(yaml_file(DEPLOY / name), dict), name
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert isinstance(yaml_file(path), dict), path
    assert (DEPLOY / "Dockerfile").read_text().startswith("#")


def test_the_compose_file_has_the_seed_services() -> None:
    services = set(yaml_file(DEPLOY / "docker-compose.yml")["services"])
    assert {"redis", "worker", "scheduler", "metrics", "prometheus", "grafana"} <= services


@pytest.mark.parametrize("argv", all_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_every_command_is_a_real_corq_command_with_real_options(argv: list[str]) -> None:
    assert argv[0] == "corq"
    command = cli.commands.get(argv[1])
    assert command is not None, f"no such command: corq {argv[1]}"
    try:
        command.make_context(argv[1], argv[2:])
    except click.UsageError as exc:
        pytest.fail(f"{shlex.join(argv)}: {exc.format_message()}")


def test_the_files_run_workers_the_scheduler_and_the_collector() -> None:
    names = {argv[1] for argv in all_commands()}
    assert {"worker", "scheduler", "metrics", "autoscale"} <= names


# ------------------------------------------------------------------------------------------------
# Metric names
# ------------------------------------------------------------------------------------------------


def names_in(text: str) -> set[str]:
    """The metric names a scrape shows, as queries name them (counters with _total)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{end}" for end in ("bucket", "count", "sum")}
        names |= {sample.name for sample in family.samples}
    return names


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return str(reply.read().decode())


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every name a worker that ran a job, and the collector, expose (SQLite broker)."""
    app = corq.App(f"sqlite:///{tmp_path_factory.mktemp('deploy') / 'corq.db'}")

    @app.task
    async def one() -> None: ...

    async def scrape_both() -> tuple[str, str]:
        metrics = WorkerMetrics()
        server = serve(metrics.registry, "127.0.0.1", 0)
        try:
            async with run_worker(app, observers=[metrics]):
                await (await one.enqueue()).result(timeout=10)
            worker_text = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/")
        finally:
            server.close()
            await app.aclose()
        cluster = ClusterMetrics(app)
        cluster_server = cluster.serve("127.0.0.1", 0)
        try:
            url = f"http://127.0.0.1:{cluster_server.port}/metrics"
            cluster_text = await asyncio.to_thread(get, url)
        finally:
            cluster_server.close()
            cluster.close()
        return worker_text, cluster_text

    worker_text, cluster_text = asyncio.run(scrape_both())
    assert "corq_broker_up 1.0" in cluster_text
    return names_in(worker_text) | names_in(cluster_text)


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "corq-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return [
        *queries,
        *(v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"),
    ]


def keda_queries() -> list[str]:
    triggers = yaml_file(DEPLOY / "keda-scaledobject.yaml")["spec"]["triggers"]
    return [t["metadata"]["query"] for t in triggers if t["type"] == "prometheus"]


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("grafana", "\n".join(dashboard_queries())),
        ("keda", "\n".join(keda_queries())),
        ("docs/deploy.md", DOCS.read_text()),
    ],
)
def test_every_metric_named_is_exposed(where: str, text: str, exposed: set[str]) -> None:
    named = set(METRIC.findall(text))
    assert named, f"{where} names no metric"
    assert named - exposed == set(), f"{where} names metrics nobody exposes"


def test_keda_scales_on_the_desired_workers() -> None:
    assert any("corq_autoscale_desired_workers" in q for q in keda_queries())
