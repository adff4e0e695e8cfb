"""Fire-and-forget commands and RPC through a broker, in one supervision tree.

python examples/hello_broker.py                                        # in-memory broker
python examples/hello_broker.py amqp://guest:guest@127.0.0.1:5672/     # a real RabbitMQ
"""

import sys
import uuid
from typing import Any

import msgspec
import trio

from actors import ConsumerActor, current_inbound
from broker import Binding, Codec, Exchange, Queue, RpcClient, Topology, open_transport
from supervisor import Strategy, actor, consumer, open_supervisor, service, supervisor


class TopUp(msgspec.Struct, frozen=True, tag=True):
    account: str
    cents: int


class GetBalance(msgspec.Struct, frozen=True, tag=True):
    account: str


class Balance(msgspec.Struct, frozen=True, tag=True):
    account: str
    cents: int


class Accounts(ConsumerActor):
    """Applies top-ups once each (keyed by message id) and answers balance requests."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}
        self.applied: set[str] = set()

    async def handle(self, message: Any) -> Any:
        if isinstance(message, TopUp):
            operation = current_inbound().message_id  # a redelivery carries the same id
            if operation not in self.applied:
                self.applied.add(operation)
                self.balances[message.account] = (
                    self.balances.get(message.account, 0) + message.cents
                )
            return None
        return Balance(message.account, self.balances.get(message.account, 0))  # RPC reply


async def main(url: str) -> None:
    run = uuid.uuid4().hex[:8]  # private names, so runs never see each other's messages
    exchange, commands, requests = f"bank-{run}", f"bank-{run}.commands", f"bank-{run}.rpc"
    topology = Topology(
        exchanges=[Exchange(exchange, type="direct", durable=False, auto_delete=True)],
        queues=[Queue(name, durable=False, auto_delete=True) for name in (commands, requests)],
        bindings=[Binding(commands, exchange, "topup"), Binding(requests, exchange, "balance")],
    )
    codec = Codec([TopUp, GetBalance, Balance])
    async with open_transport(url) as transport:
        await transport.declare(topology)
        accounts = actor("accounts", Accounts)
        tree = supervisor(
            "bank",
            Strategy.ONE_FOR_ONE,
            [
                accounts,
                consumer("topups", transport, commands, accounts.ref, codec=codec),
                service("balances", transport, requests, accounts.ref, codec=codec),
            ],
        )
        async with open_supervisor(tree):
            for cents in (500, 250, 125):  # fire-and-forget: returns once the broker confirmed
                envelope = codec.encode(TopUp("42", cents))
                await transport.publish(envelope, exchange=exchange, routing_key="topup")
            client = RpcClient(transport, codec)
            with trio.fail_after(10):
                balance = Balance("42", 0)
                while balance.cents != 875:  # top-ups are handled asynchronously: wait for them
                    reply = await client.call(
                        GetBalance("42"), exchange=exchange, routing_key="balance", timeout=5
                    )
                    assert isinstance(reply, Balance)
                    balance = reply
                    await trio.sleep(0.01)
            print(f"balance of account {balance.account}: {balance.cents} cents")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
