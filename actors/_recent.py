"""The recent-messages window: a publisher's second copy of a message is not handled twice.

A publish whose confirm died with its connection is sent again after the reconnect (broker
layer), and the broker may have had the first copy: the queue then holds the message twice, the
second copy with ``redelivered=False``. A consumer asks the window of its queue before handing a
delivery over::

    recent = recent_messages("refunds")          # one window per queue, shared in the process
    if recent.seen(delivery.envelope) and not delivery.redelivered:
        ...ack it unhandled: it is a publisher's second copy...

So the duplicates a handler sees are exactly the redelivered ones (the broker's "you may have
seen this": an ack lost with its channel). The key is the message id with its attempt and replay
count, so a retry from a tier or a replay from the parking lot is a new message, not a copy. The
window holds the last ``size`` keys of the queue in this process; another process's consumers
have their own, which is why effects still deduplicate on the message id (the ledger's
operation ids).
"""

from __future__ import annotations

from collections import OrderedDict

from broker import REPLAY_COUNT_HEADER, Envelope

WINDOW = 100_000
"""Keys remembered per queue: a resend comes within seconds of its first copy."""


class RecentMessages:
    """The last `size` message keys a queue's consumers took in this process."""

    __slots__ = ("_keys", "size")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, int, object], None] = OrderedDict()

    def seen(self, envelope: Envelope) -> bool:
        """True if this message was taken before; otherwise remembers it and returns False."""
        key = (envelope.message_id, envelope.attempt, envelope.headers.get(REPLAY_COUNT_HEADER))
        if key in self._keys:
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False


_windows: dict[str, RecentMessages] = {}


def recent_messages(queue: str) -> RecentMessages:
    """The window of `queue` (made on first use)."""
    window = _windows.get(queue)
    if window is None:
        window = _windows[queue] = RecentMessages()
    return window
