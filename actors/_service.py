"""The service: RPC requests of one queue answered by an actor, many requests in flight.

::

    class Accounts(ConsumerActor):
        async def handle(self, message: Any) -> Any:
            if isinstance(message, GetBalance):
                return Balance(self.balances[message.account])
            raise ValueError(f"unknown request {message!r}")

    handle = await nursery.start(
        functools.partial(run_service, transport, "accounts", ref, codec=codec)
    )
    # elsewhere: await RpcClient(transport, codec).call(GetBalance("42"), routing_key="accounts",
    #                                                    timeout=2.0)

It runs like :func:`~actors.run_consumer` (pipelined tells, prefetch, backpressure, drain), but
once the actor's ``handle`` returned, the service replies with the return value (None travels
too) and then acks the request; when ``handle`` raised, it replies with a
:class:`~broker.RemoteFailure` naming the exception, which the caller's
:class:`~broker.RpcClient` raises as :class:`~broker.RemoteError`, and acks. So a request is
answered at most once and never retried (the caller owns the retry; it knows its deadline): a
request that fails is not redelivered forever. A request that does not decode, or a return value
the codec cannot encode, is answered with a RemoteFailure too. A message without ``reply_to`` is
rejected (nacked without requeue). If the consumer dies before the reply, the request is
redelivered and answered then, if its caller still waits (the request expires with its deadline).

Whether a failure restarts the actor: per ``policy`` (its ``restart`` rule) when given; without
one, never: the exception is the answer.
"""

from __future__ import annotations

import logging

import trio

from actors._consumer import ConsumerHandle, Flow, Inbound, Target, run_flow
from actors._settings import ConsumerSettings
from broker import (
    BrokerError,
    Codec,
    FailurePolicy,
    NotARequest,
    PublishError,
    Transport,
    encode_failure,
    encode_reply,
    register_rpc_types,
)

__all__ = ["run_service"]

_log = logging.getLogger("actors.service")
_DEFAULTS = ConsumerSettings()


async def run_service(
    transport: Transport,
    queue: str,
    target: Target,
    *,
    codec: Codec,
    prefetch: int = _DEFAULTS.prefetch,
    policy: FailurePolicy | None = None,
    drain_timeout: float = _DEFAULTS.drain_timeout,
    task_status: trio.TaskStatus[ConsumerHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the RPC requests of ``queue`` with ``target``, replying before each ack.

    Reports ready with a :class:`~actors.ConsumerHandle` (``request_stop()`` drains, as a
    consumer). Raises ValueError for ``prefetch < 1`` or a negative ``drain_timeout``, and what
    the transport raises (NotDeclared for a missing queue).
    """
    register_rpc_types(codec)
    flow = Flow(queue, policy=policy, restart_unlisted=False)
    await run_flow(
        transport,
        flow,
        target,
        codec=codec,
        prefetch=prefetch,
        drain_timeout=drain_timeout,
        settle=_answer,
        task_status=task_status,
    )


async def _answer(transport: Transport, flow: Flow, inbound: Inbound) -> None:
    """Reply to one handled request, then ack it."""
    delivery = inbound.delivery
    codec = flow.codec
    assert codec is not None  # invariant: run_flow sets it
    if inbound.error is None:
        try:
            reply = encode_reply(codec, inbound.result)
        except BrokerError as error:  # UnknownMessageType, UnencodableMessage
            reply = encode_failure(codec, error, service=flow.queue)
    else:
        reply = encode_failure(codec, inbound.error, service=flow.queue)
    try:
        await transport.reply(delivery, reply)
    except NotARequest:
        _log.warning(
            "message %r on service queue %r has no reply_to; rejected",
            delivery.envelope.message_id,
            flow.queue,
        )
        await transport.nack(delivery, requeue=False)
        flow.count("rejected")
        return
    except PublishError as error:
        # Acked anyway: answering twice (a redelivery) is worse than a caller that times out.
        _log.warning(
            "the reply to %r from %r was not sent: %r",
            delivery.envelope.message_id,
            flow.queue,
            error,
        )
    await transport.ack(delivery)
    flow.count("acked")
