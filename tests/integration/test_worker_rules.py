"""A worker stores its tasks' flow-control rules in every queue it serves, at start."""

from __future__ import annotations

import pytest

import corq
from corq.backends import open_backend
from corq.flow import Rate


async def test_a_worker_stores_its_tasks_rules_in_every_queue_it_serves(
    broker_url: str, prefix: str
) -> None:
    app = corq.App(broker_url, prefix=prefix)
    other = open_backend(broker_url, prefix=prefix)
    if not hasattr(other, "set_rules"):
        await other.close()
        await app.aclose()
        pytest.skip("this broker stores no flow rules yet")

    @app.task(concurrency=3, rate_limit="10/s")
    async def limited() -> None: ...

    @app.task(key=lambda tenant: tenant, key_concurrency=1)
    async def per_tenant(tenant: str) -> None: ...

    @app.task
    async def plain() -> None: ...

    try:
        # Given no rules stored yet, When a worker starts on two queues
        assert await other.get_rules("a") == []
        async with corq.Worker(app, queues=["a", "b"], scheduler=False):
            # Then both queues hold the rules of the two ruled tasks, and none for the plain one
            for queue in ("a", "b"):
                rules = {r.task: r for r in await other.get_rules(queue)}
                assert set(rules) == {limited.name, per_tenant.name}
                assert rules[limited.name].concurrency == 3
                assert rules[limited.name].rate == Rate(10, 1000)
                assert rules[per_tenant.name].keyed
                assert rules[per_tenant.name].key_concurrency == 1
    finally:
        await other.close()
        await app.aclose()
