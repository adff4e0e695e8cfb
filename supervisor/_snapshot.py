"""The live snapshot of a supervision tree, as msgspec Structs that encode to JSON.

    snapshot = supervisor.snapshot()
    msgspec.json.encode(snapshot)  # b'{"path":"root","kind":"supervisor",...}'
    print(render(snapshot))

`render` draws the indented text tree the CLI shows::

    root  supervisor  running  restarts=0  up 12.0s
      sim  worker  backing_off  restarts=3  retry in 0.8s  last: ConnectionError: refused
      pool  pool  running  restarts=0  up 12.0s
        pool-0  worker  running  restarts=0  depth=4  up 12.0s
"""

import enum
from typing import Literal

import msgspec

NodeKind = Literal["supervisor", "worker", "pool", "entities"]
"""What a node is: a supervisor, a plain actor (worker), a pool or an entity host."""


class Status(enum.StrEnum):
    """Where a child (or a supervisor) is in its life; a snapshot's `state`."""

    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a child ended abnormally: the exception's type name and message."""

    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> "Failure":
        """The failure that `exc` describes."""
        return cls(type=type(exc).__name__, message=str(exc))

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class NodeSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One node of the tree at one moment, with its children (empty for a worker).

    `uptime` is the seconds since the current incarnation reported ready (None unless running);
    `backoff_remaining` the seconds until the next restart (None unless backing off);
    `mailbox_depth` the messages waiting, when the child has a mailbox.
    """

    path: str
    kind: NodeKind
    state: Status
    restarts: int = 0
    last_failure: Failure | None = None
    mailbox_depth: int | None = None
    uptime: float | None = None
    backoff_remaining: float | None = None
    children: tuple["NodeSnapshot", ...] = ()

    @property
    def name(self) -> str:
        """The last part of the path."""
        return self.path.rpartition("/")[2]

    def find(self, path: str) -> "NodeSnapshot | None":
        """The node at `path` in this subtree, or None."""
        if self.path == path:
            return self
        for child in self.children:
            if path == child.path or path.startswith(child.path + "/"):
                return child.find(path)
        return None

    def walk(self) -> "list[NodeSnapshot]":
        """This node and every node below it, depth first in start order."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(NodeSnapshot)


def encode(snapshot: NodeSnapshot) -> bytes:
    """`snapshot` as JSON bytes."""
    return _encoder.encode(snapshot)


def decode(data: bytes | str) -> NodeSnapshot:
    """The snapshot encoded in `data`.

    Raises:
        msgspec.ValidationError: `data` is JSON but not a snapshot.
    """
    return _decoder.decode(data)


def render(snapshot: NodeSnapshot, indent: str = "  ") -> str:
    """The tree as indented text, one node per line, children under their parent."""
    lines: list[str] = []
    _render(snapshot, 0, indent, lines)
    return "\n".join(lines)


def _render(node: NodeSnapshot, level: int, indent: str, lines: list[str]) -> None:
    parts = [f"{indent * level}{node.name}", node.kind, node.state, f"restarts={node.restarts}"]
    if node.mailbox_depth is not None:
        parts.append(f"depth={node.mailbox_depth}")
    if node.uptime is not None:
        parts.append(f"up {node.uptime:.1f}s")
    if node.backoff_remaining is not None:
        parts.append(f"retry in {node.backoff_remaining:.1f}s")
    if node.last_failure is not None:
        parts.append(f"last: {node.last_failure}")
    lines.append("  ".join(parts))
    for child in node.children:
        _render(child, level + 1, indent, lines)
