"""ReadyQueue: priorities, first come first served, the engine's and each task's limits."""

from __future__ import annotations

from dataclasses import dataclass

from taskloom.engine.scheduler import ReadyQueue


@dataclass(eq=False)
class Item:
    label: str
    priority: int = 0
    task_name: str = "t"
    task_limit: int | None = None
    dropped: bool = False


class Recorder:
    """A queue whose started items are recorded, so a test can release them."""

    def __init__(self, concurrency: int) -> None:
        self.started: list[Item] = []
        self.queue = ReadyQueue(concurrency, self.started.append)  # type: ignore[arg-type]

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.started]

    def push(self, *items: Item) -> None:
        for item in items:
            self.queue.push(item)

    def release(self, label: str) -> None:
        (item,) = [i for i in self.started if i.label == label]
        self.queue.release(item)


def test_starts_at_once_when_a_slot_is_free() -> None:
    rec = Recorder(concurrency=2)
    rec.push(Item("a"), Item("b"))
    assert rec.labels == ["a", "b"]
    assert rec.queue.active == 2
    assert len(rec.queue) == 0


def test_engine_concurrency_limit_holds_the_rest() -> None:
    rec = Recorder(concurrency=2)
    rec.push(Item("a"), Item("b"), Item("c"), Item("d"))
    assert rec.labels == ["a", "b"]
    assert len(rec.queue) == 2
    rec.release("a")
    assert rec.labels == ["a", "b", "c"]
    assert rec.queue.active == 2
    rec.release("b")
    rec.release("c")
    assert rec.labels == ["a", "b", "c", "d"]
    rec.release("d")
    assert rec.queue.active == 0
    assert len(rec.queue) == 0


def test_higher_priority_first_zero_ordinary_negative_last() -> None:
    rec = Recorder(concurrency=1)
    rec.push(Item("blocker"))
    rec.push(
        Item("p0", 0),
        Item("p5", 5),
        Item("m1", -1),
        Item("p10", 10),
        Item("m5", -5),
    )
    for label in ("blocker", "p10", "p5", "p0", "m1"):
        rec.release(label)
    assert rec.labels == ["blocker", "p10", "p5", "p0", "m1", "m5"]


def test_first_come_first_served_within_a_priority() -> None:
    rec = Recorder(concurrency=1)
    rec.push(Item("blocker"))
    rec.push(*(Item(f"n{i}", 3 if i % 2 else 0) for i in range(8)))
    for _ in range(8):
        rec.release(rec.started[-1].label)
    assert rec.labels == ["blocker", "n1", "n3", "n5", "n7", "n0", "n2", "n4", "n6"]


def test_a_waiting_item_is_not_overtaken_by_a_new_push() -> None:
    rec = Recorder(concurrency=1)
    rec.push(Item("a"), Item("b"))
    rec.release("a")
    rec.push(Item("c"))
    assert rec.labels == ["a", "b"]
    rec.release("b")
    assert rec.labels == ["a", "b", "c"]


def test_per_task_limit_parks_runs_without_blocking_other_tasks() -> None:
    rec = Recorder(concurrency=10)
    rec.push(
        Item("slow1", task_name="slow", task_limit=1),
        Item("slow2", task_name="slow", task_limit=1),
        Item("slow3", task_name="slow", task_limit=1),
        Item("fast1", task_name="fast"),
        Item("fast2", task_name="fast"),
    )
    assert rec.labels == ["slow1", "fast1", "fast2"]
    assert len(rec.queue) == 2  # two parked runs of "slow"
    rec.release("fast1")
    assert rec.labels == ["slow1", "fast1", "fast2"]  # a slot of another task frees none
    rec.release("slow1")
    assert rec.labels == ["slow1", "fast1", "fast2", "slow2"]
    rec.release("slow2")
    assert rec.labels[-1] == "slow3"


def test_per_task_limit_above_one() -> None:
    rec = Recorder(concurrency=10)
    rec.push(*(Item(f"s{i}", task_name="s", task_limit=2) for i in range(4)))
    assert rec.labels == ["s0", "s1"]
    rec.release("s1")
    assert rec.labels == ["s0", "s1", "s2"]


def test_parked_runs_come_back_by_priority() -> None:
    rec = Recorder(concurrency=10)
    rec.push(Item("first", task_name="s", task_limit=1))
    rec.push(
        Item("low", -1, task_name="s", task_limit=1),
        Item("high", 7, task_name="s", task_limit=1),
        Item("mid", 0, task_name="s", task_limit=1),
    )
    for label in ("first", "high", "mid"):
        rec.release(label)
    assert rec.labels == ["first", "high", "mid", "low"]


def test_dropped_entries_are_skipped() -> None:
    rec = Recorder(concurrency=1)
    b = Item("b")
    rec.push(Item("a"), b, Item("c"))
    b.dropped = True
    rec.release("a")
    assert rec.labels == ["a", "c"]
    assert rec.queue.active == 1


def test_a_dropped_entry_parked_behind_a_task_limit_is_skipped() -> None:
    rec = Recorder(concurrency=10)
    parked = Item("s2", task_name="s", task_limit=1)
    rec.push(
        Item("s1", task_name="s", task_limit=1), parked, Item("s3", task_name="s", task_limit=1)
    )
    assert rec.labels == ["s1"]
    parked.dropped = True
    rec.release("s1")
    assert rec.labels == ["s1", "s3"]
    rec.release("s3")
    assert rec.labels == ["s1", "s3"]
    assert rec.queue.active == 0
    assert len(rec.queue) == 0


def test_only_dropped_entries_parked_leave_the_queue_empty() -> None:
    rec = Recorder(concurrency=10)
    dropped = [Item(f"s{i}", task_name="s", task_limit=1) for i in range(1, 4)]
    rec.push(Item("s0", task_name="s", task_limit=1), *dropped)
    for item in dropped:
        item.dropped = True
    rec.release("s0")
    assert rec.labels == ["s0"]
    assert len(rec.queue) == 0
    rec.push(Item("later", task_name="s", task_limit=1))
    assert rec.labels == ["s0", "later"]


def test_a_released_slot_admits_the_next_even_across_tasks() -> None:
    rec = Recorder(concurrency=2)
    rec.push(
        Item("a1", task_name="a", task_limit=1),
        Item("a2", task_name="a", task_limit=1),
        Item("b1", task_name="b"),
        Item("b2", task_name="b"),
    )
    # a2 is parked (task limit) so b1 takes the second engine slot.
    assert rec.labels == ["a1", "b1"]
    rec.release("b1")
    assert rec.labels == ["a1", "b1", "b2"]
    rec.release("a1")
    assert rec.labels == ["a1", "b1", "b2", "a2"]
