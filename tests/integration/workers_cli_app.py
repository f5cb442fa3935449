"""The app `corq ... --app tests.integration.workers_cli_app:app` loads in test_cli_workers
(each test sets it: a FakeClock shared with the test's worker)."""

from __future__ import annotations

import corq

app: corq.App | None = None
