from __future__ import annotations

import corq


def test_all_is_sorted_and_exported() -> None:
    assert corq.__all__ == sorted(corq.__all__)
    public = {name for name in dir(corq) if not name.startswith("_")}
    modules = {
        "app",
        "backends",
        "client",
        "clock",
        "context",
        "errors",
        "flow",
        "job",
        "limits",
        "names",
        "retry",
        "serializers",
        "settings",
        "spec",
        "task",
        "types",
        "worker",
        "testing",
        "cli",
        "annotations",
        "aio",
        "schedule",
        "schedules",
        "scheduler",
        "canvas",
        "producer_checks",
        "workflow",
        "workflow_plan",
        "workflow_sender",
        "workflows",
        "admin",
        "control",
        "overrides",
        "events",
        "worker_info",
        "metrics",
        "stacks",
    }
    assert set(corq.__all__) == public - modules
