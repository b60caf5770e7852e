"""Workflows and packages through `taskloom.Client` and `taskloom.AsyncClient` against a
real `taskloom serve` process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_server import Served

import taskloom
from support import wait_until
from taskloom.packages import UnknownPackageError

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(90)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


@pytest.fixture
def served(cli: Cli) -> Served:
    shutil.copy(HELPERS / "server_tasks.py", cli.cwd / "server_tasks.py")
    cli.env["TASKLOOM_VENVS_DIR"] = str(cli.cwd / "venvs")
    return Served(cli.start("serve", "server_tasks.py"))


def chain() -> taskloom.Workflow:
    workflow = taskloom.Workflow("chain", inputs={"a": int})
    first = workflow.step("adder", a=workflow.input("a"), b=2)
    second = workflow.step("adder", a=first.result, b=10, name="second")
    workflow.output("total", second.result)
    return workflow


def test_the_client_submits_reads_reruns_and_cancels_workflows(served: Served) -> None:
    with taskloom.Client(served.url) as client:
        run = client.submit_workflow(chain(), {"a": 1})
        assert isinstance(run, taskloom.Run)
        assert run.task == "workflow:chain"
        done = client.wait(run.id, timeout=20)
        assert done.status == taskloom.RunStatus.COMPLETED
        assert done.result["outputs"] == {"total": 13}

        shown = client.get_workflow(run.id)
        assert [(s["name"], s["status"], s["result"]) for s in shown["steps"]] == [
            ("adder", "completed", 3),
            ("second", "completed", 13),
        ]
        assert shown["steps"][1]["dependencies"] == ["adder"]
        assert all(s["runs"][0]["parent_id"] == run.id for s in shown["steps"])

        again = client.rerun_workflow(run.id)
        redone = client.wait(again.id, timeout=20)
        assert redone.result["reused"] == 2
        assert redone.result["outputs"] == {"total": 13}

        with pytest.raises(taskloom.WorkflowValidationError) as invalid:
            client.submit_workflow(
                {"name": "bad", "steps": {"one": {"task": "adder", "inputs": {"a": 1}}}}
            )
        assert (invalid.value.workflow, invalid.value.step) == ("bad", "one")
        assert invalid.value.field == "input 'b'"
        assert "missing required input of task 'adder'" in str(invalid.value)
        with pytest.raises(taskloom.InputValidationError) as inputs:
            client.submit_workflow(chain(), {"a": "one"})
        assert inputs.value.task == "workflow:chain"
        with pytest.raises(taskloom.WorkflowError, match="is not a workflow run"):
            client.get_workflow(client.run("adder", {"a": 1, "b": 1}).id)

        slow = client.submit_workflow(
            "name: slow\nsteps:\n  rest: {task: nap, inputs: {seconds: 30}}\n"
        )
        with pytest.raises(taskloom.WorkflowError, match="still running"):
            client.rerun_workflow(slow.id)
        assert client.cancel(slow.id).status == taskloom.RunStatus.CANCELLED
        (step,) = client.get_workflow(slow.id)["steps"]
        assert step["status"] == "cancelled"
    assert served.stop()[0] == 0


def wait_for_state(client: taskloom.Client, name: str, timeout: float = 60) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def settled() -> dict[str, Any] | None:
        seen[:] = [client.package(name)]
        return seen[0] if seen[0]["state"] not in {"pending", "installing"} else None

    def still() -> str:
        return f"package {name} settled (last seen: {seen[0]['state'] if seen else 'nothing'})"

    return wait_until(settled, timeout, what=still)


def test_the_client_adds_polls_and_removes_a_package(served: Served) -> None:
    with taskloom.Client(served.url) as client:
        assert client.packages() == []
        added = client.add_package("no-such-task-package==9.9", pip_args=["--no-index"])
        assert added["state"] == "installing"
        package = wait_for_state(client, "no-such-task-package")
        assert package["state"] == "failed"
        assert "No matching distribution found" in package["log"]
        assert client.remove_package("no-such-task-package")["name"] == "no-such-task-package"
        with pytest.raises(UnknownPackageError):
            client.package("no-such-task-package")
        with pytest.raises(UnknownPackageError):
            client.reinstall_package("no-such-task-package")
    assert served.stop()[0] == 0


async def test_the_async_client_runs_a_workflow(served: Served) -> None:
    async with taskloom.AsyncClient(served.url) as client:
        run = await client.submit_workflow(chain().to_dict(), {"a": 5})
        done = await client.wait(run.id, timeout=20)
        assert done.result["outputs"] == {"total": 17}
        steps = (await client.get_workflow(run.id))["steps"]
        assert [s["status"] for s in steps] == ["completed", "completed"]
        again = await client.rerun_workflow(run.id)
        assert (await client.wait(again.id, timeout=20)).result["reused"] == 2
        with pytest.raises(taskloom.WorkflowValidationError):
            await client.submit_workflow({"name": "x", "steps": {"s": {"task": "os:system"}}})
        assert await client.packages() == []
        with pytest.raises(UnknownPackageError):
            await client.remove_package("nope")
    assert served.stop()[0] == 0
