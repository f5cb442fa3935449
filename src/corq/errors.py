"""Exceptions raised by corq.

The tree::

    CorqError
    ├── ConfigError                 bad settings or URL
    ├── TaskError                   a task definition or lookup problem
    │   ├── UnknownTaskError        no task registered under a name
    │   └── TaskDefinitionError     a decorator argument or signature that cannot work
    ├── EnqueueError                a job that cannot be accepted (nothing was written)
    │   ├── ArgumentError           args do not bind to the signature or do not match its hints
    │   ├── SerializationError      a value the serializer cannot encode
    │   ├── PayloadTooLargeError    encoded payload over the size limit
    │   └── WorkflowError           unknown dependency, cycle, too many jobs
    ├── BrokerError                 the broker is unreachable or failed for now (retried)
    ├── BrokerDataError             the broker refused a request or holds unusable data
    ├── JobNotFoundError            no job with that id (or its record expired)
    ├── JobFailedError              the job ended dead; carries its error and traceback
    │   └── UpstreamFailedError     a dependency ended dead or cancelled
    ├── JobCancelledError           the job was cancelled
    ├── WorkflowNotFoundError       no workflow with that id (or it finished and expired)
    ├── ScheduleError               a schedule that cannot be defined (bad rule, task, args)
    │   └── ScheduleNotFoundError   no schedule with that name
    ├── ResultTimeoutError          waiting for a result took longer than asked (also TimeoutError)
    ├── Retry                       raised inside a task to ask for another attempt
    └── Snooze                      raised inside a task to run later, no attempt used

Not raised by corq but handed over as a value: ``corq.workflow.UpstreamError`` (a
CorqError), a failed parent in ``current_job().parent_results()``.

Each class docstring is its default message.
"""

from __future__ import annotations


class CorqError(Exception):
    """corq failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(CorqError):
    """Invalid corq configuration."""


class TaskError(CorqError):
    """Task problem."""


class UnknownTaskError(TaskError):
    """No task is registered under this name."""


class TaskDefinitionError(TaskError):
    """This task definition cannot work."""


class EnqueueError(CorqError):
    """The job was not accepted; nothing was written."""


class ArgumentError(EnqueueError):
    """The arguments do not fit the task's signature."""


class SerializationError(EnqueueError):
    """A value cannot be encoded by the serializer."""


class PayloadTooLargeError(EnqueueError):
    """The encoded job is larger than the payload limit."""


class BrokerError(CorqError):
    """The broker failed or cannot be reached."""


class BrokerDataError(CorqError):
    """The broker refused this request, or its data cannot be used; retrying will not help."""


class JobNotFoundError(CorqError):
    """No job has this id (or its record has expired)."""


class JobFailedError(CorqError):
    """The job failed for good and is in the dead letters."""

    def __init__(self, message: str | None = None, *, traceback: str | None = None) -> None:
        super().__init__(message)
        #: The formatted traceback of the last attempt, when there was one.
        self.traceback = traceback


class JobCancelledError(CorqError):
    """The job was cancelled."""


class JobExpiredError(CorqError):
    """The job never ran: it was not started by its ``expires`` deadline, or it was over a
    rate limit that drops (``over_limit="drop"``). Its error says which."""


class FlowRuleError(TaskDefinitionError, ArgumentError):
    """A flow-control rule or option is not valid (a rate like ``"fast"``, a limit of 0, a
    weight that is not a positive integer, ``debounce`` without ``unique_key``, a key
    function that raises or returns a non-str): raised where the rule is given, at task
    definition or at enqueue, before anything is written."""


class WorkflowError(EnqueueError):
    """This workflow cannot be enqueued (an unknown dependency, a cycle, too many jobs);
    nothing was written."""


class WorkflowNotFoundError(CorqError):
    """No workflow has this id (or it finished and expired)."""


class UpstreamFailedError(JobFailedError):
    """A dependency of the job ended dead or cancelled, so the job never ran."""


class ScheduleError(CorqError):
    """This schedule cannot be defined."""


class ScheduleNotFoundError(ScheduleError):
    """No schedule has this name."""


class ResultTimeoutError(CorqError, TimeoutError):
    """The job did not finish in the time given."""


class Retry(CorqError):  # the name reads as an instruction: `raise corq.Retry(delay=5)`
    """The task asked to be retried."""

    def __init__(self, message: str | None = None, *, delay: float | None = None) -> None:
        super().__init__(message)
        #: Seconds to wait before the next attempt; None means the task's backoff policy.
        self.delay = delay


class Snooze(CorqError):  # an instruction, like Retry: `raise corq.Snooze(30)`
    """The task asks to run again later without using an attempt (polling something that is
    not ready yet): the job is scheduled `delay` seconds from now, its attempt not counted."""

    def __init__(self, delay: float, message: str | None = None) -> None:
        super().__init__(message)
        #: Seconds until the job runs again (a number from 0 to 100 years; anything else
        #: fails the attempt instead).
        self.delay = delay
        #: Why, as the job's record shows it while it waits (None: "snoozed for <delay>s").
        self.reason = message


class JobNotCancellableError(CorqError):
    """The job has ended already (or does not exist): there is nothing to cancel."""


class WorkerNotAnsweringError(CorqError):
    """A worker did not answer a request sent over the control channel in time (it is not
    running, not connected to this broker, or the id is wrong)."""
