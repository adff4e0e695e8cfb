"""The actor errors: one small tree, each class also inheriting the stdlib error a caller catches.

Every message is one sentence: the rule, the offending value, the actor it concerns, and the fix.

    try:
        balance = await ref.ask(GetBalance())
    except AskTimeout:          # also a TimeoutError
        ...
    except ActorCrashed as exc:  # also a RuntimeError; exc.__cause__ is what the actor raised
        ...
"""

import trio


class ActorError(Exception):
    """Base of every error raised by `actors`."""


class InvalidMailbox(ActorError, ValueError):  # noqa: N818 - the names of the public contract
    """A mailbox was given a setting it cannot work with (e.g. a capacity below 1)."""


class InvalidEntities(ActorError, ValueError):  # noqa: N818 - the names of the public contract
    """An entity host was given a setting it cannot work with (e.g. a concurrency below 1)."""


class InvalidTimeout(ActorError, ValueError):  # noqa: N818 - like the others of the contract
    """An ask was given a negative (or NaN) timeout."""


class MailboxFull(ActorError, trio.WouldBlock):  # noqa: N818 - the names of the public contract
    """`tell_nowait` found the mailbox full; it is also the `trio.WouldBlock` of `send_nowait`."""


class AlreadyRunning(ActorError, RuntimeError):  # noqa: N818 - the names of the public contract
    """A second incarnation tried to run on a mailbox (or entity host) that already runs one."""


class ActorStopped(ActorError, RuntimeError):  # noqa: N818 - the names of the public contract
    """The target was stopped or closed before it could take or answer the message."""


class OwnershipLost(ActorError, RuntimeError):  # noqa: N818 - the names of the public contract
    """Raised by a handler whose delivery came through a subscription that no longer owns its
    partition (another consumer took it over, e.g. its fence in a store moved on). The consumer
    leaves the delivery unsettled for the new owner and gives that subscription up."""


class ActorCrashed(ActorError, RuntimeError):  # noqa: N818 - the names of the public contract
    """The target raised while handling this very ask; `cause` (and `__cause__`) is its error."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause
        self.__cause__ = cause


class AskTimeout(ActorError, TimeoutError):  # noqa: N818 - the names of the public contract
    """No reply came before the ask's deadline."""


class AlreadyRegistered(ActorError, ValueError):  # noqa: N818 - the names of the public contract
    """A name was registered twice."""


class NotRegistered(ActorError, LookupError):  # noqa: N818 - the names of the public contract
    """A name that nobody registered was looked up or unregistered."""


class EntitiesFailed(ActorError, RuntimeError):  # noqa: N818 - the names of the public contract
    """An entity host saw more entity crashes than its intensity allows within its period."""


def stopped_error(name: str, reason: str) -> ActorStopped:
    return ActorStopped(
        f"actor {name!r} is closed ({reason}) and takes no more messages;"
        " stop sending to it or look up its replacement"
    )


def crashed_error(name: str, cause: BaseException) -> ActorCrashed:
    return ActorCrashed(
        f"actor {name!r} crashed with {cause!r} while handling this ask;"
        " its supervisor restarts it, so retry the ask if it is safe to repeat",
        cause,
    )


def interrupted_error(name: str) -> ActorStopped:
    return ActorStopped(
        f"actor {name!r} was stopped (cancelled) while handling this ask;"
        " retry the ask once it runs again if it is safe to repeat"
    )
