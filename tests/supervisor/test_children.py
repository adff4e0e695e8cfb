"""Actors, pools and entity hosts as children: references that survive restarts."""

from typing import Any

import pytest
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from actors import Actor, ActorCrashed, ActorStopped
from supervisor import (
    Backoff,
    Restart,
    Strategy,
    actor,
    entities,
    open_supervisor,
    pool,
    supervisor,
)

incarnations: list[str] = []


class Echo(Actor):
    """Answers with its name and how many messages it handled; "crash" crashes it."""

    def __init__(self, name: str = "echo") -> None:
        self.name = name
        self.handled = 0

    async def on_start(self) -> None:
        incarnations.append(self.name)

    async def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name} was told to crash")
        if message == "block":
            await trio.sleep_forever()
        self.handled += 1
        return (self.name, self.handled)


@pytest.fixture(autouse=True)
def forget_incarnations() -> None:
    incarnations.clear()


async def test_an_actor_child_keeps_its_ref_across_restarts() -> None:
    echo = actor("echo", Echo)
    async with open_supervisor(supervisor("root", "one_for_one", [echo])):
        assert await echo.ref.ask("hello") == ("echo", 1)
        with pytest.raises(ActorCrashed):
            await echo.ref.ask("crash")
        await wait_all_tasks_blocked()
        assert await echo.ref.ask("hello") == ("echo", 1)  # a fresh actor, the same ref
        assert incarnations == ["echo", "echo"]
    with pytest.raises(ActorStopped):
        await echo.ref.ask("hello")  # the tree is done: the mailbox is closed


async def test_a_sibling_keeps_answering_while_another_backs_off(
    autojump_clock: MockClock,
) -> None:
    slow = actor("slow", lambda: Echo("slow"), backoff=Backoff.constant(60.0))
    quick = actor("quick", lambda: Echo("quick"))
    async with open_supervisor(supervisor("root", "one_for_one", [slow, quick])) as root:
        with pytest.raises(ActorCrashed):
            await slow.ref.ask("crash")
        await wait_all_tasks_blocked()
        began = trio.current_time()
        for count in range(1, 6):
            assert await quick.ref.ask("ping") == ("quick", count)
        assert trio.current_time() == began  # no waiting at all on the sibling's backoff
        node = root.snapshot().find("root/slow")
        assert node is not None
        assert node.state == "backing_off"
        await trio.sleep(60.0)
        assert await slow.ref.ask("ping") == ("slow", 1)


async def test_a_temporary_actor_that_ends_has_its_mailbox_closed() -> None:
    once = actor("once", Echo, restart=Restart.TEMPORARY)
    async with open_supervisor(supervisor("root", "one_for_one", [once])):
        with pytest.raises(ActorCrashed):
            await once.ref.ask("crash")
        await wait_all_tasks_blocked()
        with pytest.raises(ActorStopped):
            await once.ref.ask("hello")


async def test_a_stuck_actor_is_cancelled_at_its_deadline(autojump_clock: MockClock) -> None:
    stuck = actor("stuck", Echo, shutdown=3.0)
    async with open_supervisor(supervisor("root", "one_for_one", [stuck])):
        stuck.ref.tell_nowait("block")
        await wait_all_tasks_blocked()
        began = trio.current_time()
    assert trio.current_time() - began == pytest.approx(3.0)


async def test_a_pool_routes_each_message_to_the_least_loaded_worker() -> None:
    workers = pool("senders", lambda: Echo("sender"), size=3)
    async with open_supervisor(supervisor("root", "one_for_one", [workers])) as root:
        first, second, third = workers.ref.refs
        # Queue work on the first two workers without letting them run.
        for _ in range(3):
            first.tell_nowait("x")
        second.tell_nowait("x")
        assert workers.ref.choose() == third
        third.tell_nowait("x")
        third.tell_nowait("x")
        assert workers.ref.choose() == second
        assert workers.ref.depth == 6
        tree = root.snapshot()
        node = tree.find("root/senders")
        assert node is not None
        assert node.kind == "pool"
        assert [child.path for child in node.children] == [
            "root/senders/senders-0",
            "root/senders/senders-1",
            "root/senders/senders-2",
        ]
        assert [child.mailbox_depth for child in node.children] == [3, 1, 2]
        await wait_all_tasks_blocked()
        assert await workers.ref.ask("ping") == ("sender", 3)  # all idle: round-robin to the third


async def test_an_idle_pool_spreads_work_round_robin() -> None:
    workers = pool("senders", Echo, size=3)
    async with open_supervisor(supervisor("root", "one_for_one", [workers])):
        chosen = [workers.ref.choose() for _ in range(6)]
    assert chosen == [*workers.ref.refs, *workers.ref.refs]


async def test_a_pool_worker_crash_restarts_only_that_worker() -> None:
    workers = pool("senders", lambda: Echo("sender"), size=2)
    async with open_supervisor(supervisor("root", "one_for_one", [workers])) as root:
        with pytest.raises(ActorCrashed):
            await workers.ref.refs[1].ask("crash")
        await wait_all_tasks_blocked()
        assert incarnations == ["sender", "sender", "sender"]
        node = root.snapshot().find("root/senders/senders-1")
        assert node is not None
        assert node.restarts == 1


class Account(Actor):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id

    async def on_start(self) -> None:
        incarnations.append(self.entity_id)

    async def handle(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"account {self.entity_id} crashed")
        return self.entity_id


async def test_an_entities_host_is_restarted_after_it_failed() -> None:
    accounts = entities("account", Account, intensity=0, concurrency=2)
    tree = supervisor("root", Strategy.ONE_FOR_ONE, [accounts], intensity=5)
    async with open_supervisor(tree) as root:
        assert await accounts.ref("42").ask("hello") == "42"
        with pytest.raises(ActorCrashed):
            await accounts.ref("7").ask("crash")  # one crash > intensity 0: the host fails
        await wait_all_tasks_blocked()
        node = root.snapshot().find("root/account")
        assert node is not None
        assert node.kind == "entities"
        assert node.state == "running"
        assert node.restarts == 1
        assert node.last_failure is not None
        assert node.last_failure.type == "EntitiesFailed"
        assert await accounts.ref("42").ask("hello") == "42"
    with pytest.raises(ActorStopped):
        await accounts.ref("42").ask("hello")


async def test_a_terminated_actor_and_a_dynamic_one_get_their_mailboxes_closed() -> None:
    first = actor("first", Echo)
    later = actor("later", Echo)
    async with open_supervisor(supervisor("root", "one_for_one", [first])) as root:
        await root.start_child(later)
        assert await later.ref.ask("hello") == ("echo", 1)
        await root.terminate_child("first")
        with pytest.raises(ActorStopped):
            await first.ref.ask("hello")
    with pytest.raises(ActorStopped):
        await later.ref.ask("hello")
