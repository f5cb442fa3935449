"""The demo's workflow: price a basket, then send a receipt.

A chain whose first step is a chord: the prices of a few products are fetched side by
side (fan-out), `add_up` gets the list of them (fan-in), `apply_discount` gets the total;
then a receipt job sent on its own with ``depends_on`` waits for the discounted total and
reads it with ``parent_results()``. The whole chain is stored in one broker call, and each
job is released by the broker when its parents have succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console

import corq
from corq.demo import tasks

#: The products whose prices are fetched side by side.
PRODUCTS = (3, 5, 8, 13, 21)
#: The discount the chain's last link applies, in percent.
DISCOUNT = 10
#: Who gets the receipt.
CUSTOMER = "ann"
#: Jobs of the workflow (the fetches, add_up, apply_discount) plus the receipt.
JOBS = len(PRODUCTS) + 3

#: How the demo prints a workflow (`corq workflow ID`'s view, handed in by the CLI).
ShowWorkflow = Callable[[Console, corq.WorkflowStatus], None]

_ENDED = frozenset(
    {
        corq.JobStatus.SUCCEEDED,
        corq.JobStatus.DEAD,
        corq.JobStatus.CANCELLED,
        corq.JobStatus.UPSTREAM_FAILED,
    }
)


@dataclass(kw_only=True)
class Basket:
    """The workflow and the receipt, as the demo follows them."""

    app: corq.App
    base_url: str
    workflow: corq.WorkflowHandle[float] | None = None
    receipt: corq.JobHandle[str] | None = None
    #: Their latest states, once read.
    status: corq.WorkflowStatus | None = None
    receipt_record: corq.Job | None = None

    async def start(self) -> None:
        """Send the chain (one broker call), then the receipt that depends on its end."""
        prices = corq.group(tasks.fetch_price.s(f"{self.base_url}/products/{p}") for p in PRODUCTS)
        flow = corq.chain(
            corq.chord(prices, tasks.add_up.then()),
            tasks.apply_discount.then(percent=DISCOUNT),
        )
        self.workflow = await flow.enqueue()
        last = self.workflow.jobs[-1]
        self.receipt = await tasks.email_receipt.with_options(depends_on=[last]).enqueue(CUSTOMER)

    async def refresh(self) -> None:
        """Read the workflow's counts (one cheap read) and the receipt's record."""
        if self.workflow is None or self.receipt is None:
            return
        self.status = await self.workflow.status(jobs=False)
        self.receipt_record = await self.receipt.info()

    @property
    def done(self) -> int:
        """Jobs ended so far, the receipt included."""
        ended = 0 if self.status is None else self.status.ended
        return ended + (1 if self._receipt_ended else 0)

    @property
    def finished(self) -> bool:
        return (
            self.status is not None
            and self.status.state is not corq.WorkflowState.RUNNING
            and self._receipt_ended
        )

    @property
    def _receipt_ended(self) -> bool:
        return self.receipt_record is not None and self.receipt_record.status in _ENDED

    def status_text(self) -> str:
        if self.status is None:
            return "sent"
        if self.finished and self.succeeded:
            return "[green]done[/green]"
        if self.finished:
            return "[red]did not succeed[/red]"
        return f"chain {self.status.state}, {self.status.ended} of {self.status.total} ended"

    @property
    def succeeded(self) -> bool:
        return (
            self.status is not None
            and self.status.state is corq.WorkflowState.SUCCEEDED
            and self.receipt_record is not None
            and self.receipt_record.status is corq.JobStatus.SUCCEEDED
        )

    def pending(self) -> str:
        """What has not ended, for the demo's timeout message."""
        if self.finished:
            return ""
        left = JOBS - self.done
        return f"workflow ({left} of {JOBS} jobs not ended)"

    async def summarize(self, console: Console, show_workflow: ShowWorkflow) -> bool:
        """The workflow as `corq workflow` shows it, its result and the receipt's; True
        when all of it succeeded."""
        assert self.workflow is not None, "started"
        assert self.receipt is not None, "started"
        console.print()
        console.print(
            f"[bold]Workflow[/bold]: a chain of a chord ({len(PRODUCTS)} fetch_price jobs side "
            "by side → add_up, given their list), then apply_discount (given the total):",
            highlight=False,
        )
        show_workflow(console, await self.workflow.status())
        console.print(
            "and the receipt, sent on its own with depends_on (a workflow of one job, named by "
            "its id):",
            highlight=False,
        )
        show_workflow(console, await self.app.workflow(self.receipt.id).status())
        try:
            total = await self.workflow.result(timeout=5)
            receipt = await self.receipt.result(timeout=5)
        except corq.CorqError as exc:
            console.print(f"[red bold]The workflow did not succeed:[/red bold] {exc}")
            return False
        prices = await self._prices()
        console.print(
            f"  prices {prices} → add_up {sum(prices):.2f} → apply_discount({DISCOUNT}%) "
            f"{total:.2f} (the workflow's result)",
            highlight=False,
        )
        console.print(f"  email_receipt, after it: {receipt!r}", highlight=False)
        return True

    async def _prices(self) -> list[float]:
        assert self.workflow is not None
        results: list[Any] = [
            await job.result(timeout=5) for job in self.workflow.jobs[: len(PRODUCTS)]
        ]
        return [float(r["price"]) for r in results]
