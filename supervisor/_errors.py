"""The supervisor's exception tree.

Every class also inherits the standard error a caller would catch anyway, so
`except ValueError` still catches a bad child spec::

    try:
        validate(spec)
    except InvalidChildSpec as exc:
        print(exc)  # child 'root/carriers/sim': backoff.max must be >= backoff.min (...)
"""

from collections.abc import Sequence


class SupervisorError(Exception):
    """Base class of every error the supervisor raises."""


class InvalidChildSpec(SupervisorError, ValueError):  # noqa: N818 - the name DESIGN.md fixes
    """A child or supervisor spec breaks a rule; the message names the child path and field."""


class ChildStartError(SupervisorError, RuntimeError):
    """A child failed before it reported ready while its supervisor was starting.

    The supervisor stopped the children it had already started, in reverse order. The child's
    own exception is the `__cause__`.
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        self.path = path
        super().__init__(
            f"child {path!r} failed to start: {type(cause).__name__}: {cause}; "
            "its supervisor stopped the children started before it"
        )


class RestartIntensityError(SupervisorError, RuntimeError):
    """A supervisor saw more restarts than its intensity allows within its period and gave up.

    It stopped all its children (reverse start order) first. `causes` is the chain from this
    supervisor down to the failure that tipped it over, one line per level, outermost first::

        supervisor 'root' gave up: more than 3 restarts within 5.0s
        supervisor 'root/carriers' gave up: more than 2 restarts within 1.0s
        child 'root/carriers/sim' crashed: ConnectionError: refused
    """

    def __init__(
        self, path: str, intensity: int, period: float, child: str, cause: BaseException
    ) -> None:
        self.path = path
        self.intensity = intensity
        self.period = period
        self.child = child
        head = f"supervisor {path!r} gave up: more than {intensity} restarts within {period}s"
        self.causes: tuple[str, ...] = (head, *describe_cause(child, cause))
        super().__init__(f"{head}; last failure: {self.causes[-1]}")


def describe_cause(child: str, cause: BaseException) -> Sequence[str]:
    """The chain of causes of `cause`, the exit of child `child`, one line per level."""
    if isinstance(cause, RestartIntensityError):
        return cause.causes
    return (f"child {child!r} crashed: {type(cause).__name__}: {cause}",)


class UnknownChildError(SupervisorError, LookupError):
    """A supervisor was asked about a child it does not have."""
