"""What every fault test checks once the fault is over and the runs are done.

No accepted run lost, none left `pending` or `running`, each ended as its task says
(completed, or failed with a clear error), none completed twice, and the attempts
recorded match what the ledger of the tasks says happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from fault_processes import attempts_of, snapshot
from fault_tasks import RETRIED, read_ledger

from taskloom.runs import Run


@dataclass
class Checked:
    """The runs as the database holds them, and the ledger's lines (event, key, pid)."""

    runs: dict[str, Run]
    entries: list[tuple[str, str, int]]


def check_runs(url: str, ledger: str, accepted: Collection[str]) -> Checked:
    runs = snapshot(url)
    attempts = attempts_of(url, list(runs))
    entries = read_ledger(ledger)
    ends = Counter(key for event, key, _ in entries if event == "end")
    ends_by_process = Counter((key, pid) for event, key, pid in entries if event == "end")

    lost = set(accepted) - set(runs)
    assert not lost, f"accepted runs missing from the database: {sorted(lost)}"
    stuck = {rid: str(run.status) for rid, run in runs.items() if not run.is_finished}
    assert not stuck, f"runs never finished: {stuck}"

    for rid, run in runs.items():
        key = run.inputs["key"]
        where = f"run {rid} ({run.task}, {key}): {run.status}, error {run.error}"
        if run.task in RETRIED:
            assert run.status == "completed", where
        elif run.task == "refused":
            assert run.status == "failed", where
            assert run.error is not None
            assert run.error.type in ("ValueError", "WorkerLostError"), where
            if run.error.type == "ValueError":
                assert f"refused {key} on purpose" in run.error.message, where
        else:  # recorded_once: no retry left for a crash during its body
            assert run.status in ("completed", "failed"), where
            if run.status == "failed":
                assert run.error is not None
                assert run.error.type == "WorkerLostError", where
                assert rid in run.error.message, where
        if run.status == "completed":
            assert run.result == key, where
            assert ends[key] >= 1, f"{where}: completed, but its code never ran to its end"
        rows = attempts[rid]
        assert [a.number for a in rows] == list(range(1, len(rows) + 1)), where
        assert len(rows) == run.attempts, f"{where}: {len(rows)} attempt rows"
        if rows:
            assert all(a.finished_at is not None for a in rows), f"{where}: {rows}"
            assert rows[-1].status == run.status, f"{where}: last attempt {rows[-1]}"
        # A process runs a run's code to its end once at most.
        for event, k, pid in entries:
            if k == key and event == "end":
                assert ends_by_process[(key, pid)] == 1, f"{where}: ended twice in {pid}"
    return Checked(runs, entries)


def check_attempts_truth(checked: Checked) -> None:
    """Each time a run's code began is an attempt: an execution that may have started
    before a crash is counted, so a run without retries never runs twice."""
    starts = Counter(key for event, key, _ in checked.entries if event == "start")
    wrong = {
        f"{rid} ({run.task})": (starts[run.inputs["key"]], run.attempts)
        for rid, run in checked.runs.items()
        if starts[run.inputs["key"]] > run.attempts
    }
    assert not wrong, f"runs whose code began more often than the attempts recorded: {wrong}"
