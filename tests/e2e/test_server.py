"""`taskloom serve` as a real process, driven over HTTP by `taskloom.Client` and
`taskloom.AsyncClient`; `taskloom token` from the command line."""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

import taskloom

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(60)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
REPO = Path(__file__).resolve().parents[2]
SERVING = re.compile(r"^taskloom \S+ serving (http://\S+)  \(database: (.+)\)$")


class Served:
    """A `taskloom serve` process and the URL it printed."""

    def __init__(self, process: subprocess.Popen[str], timeout: float = 20) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                assert process.stderr is not None
                raise AssertionError(f"serve ended: {process.wait()} {process.stderr.read()}")
            match = SERVING.match(line.rstrip("\n"))
            if match:
                self.url, self.database = match.group(1), match.group(2)
                return

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def stop(self, timeout: float = 20) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


@pytest.fixture
def served_cli(cli: Cli) -> Cli:
    shutil.copy(HELPERS / "server_tasks.py", cli.cwd / "server_tasks.py")
    return cli


def test_the_client_drives_every_operation_of_a_real_server(served_cli: Cli) -> None:
    served = Served(served_cli.start("serve", "server_tasks.py"))
    assert served.url.startswith("http://127.0.0.1:")
    assert served.database == "taskloom.db"
    with taskloom.Client(served.url) as client:
        assert client.health()["auth"] is False
        names = [t["name"] for t in client.tasks()]
        assert names == ["adder", "broken", "chatty", "nap"]
        assert client.task("adder")["input_schema"]["required"] == ["a", "b"]

        run = client.submit("adder", {"a": 2, "b": 3})
        assert isinstance(run, taskloom.Run)
        done = client.wait(run.id, timeout=10)
        assert (done.status, done.result) == (taskloom.RunStatus.COMPLETED, 5)
        assert client.get_run(run.id).result == 5

        with pytest.raises(taskloom.InputValidationError) as invalid:
            client.submit("adder", {"a": "two"})
        assert {e.field for e in invalid.value.errors} == {"a", "b"}
        assert invalid.value.task == "adder"
        assert "task 'adder': input 'a'" in str(invalid.value)
        with pytest.raises(taskloom.UnknownTaskError, match="unknown task 'nope'"):
            client.submit("nope", {})
        with pytest.raises(taskloom.RunNotFoundError):
            client.get_run("missing")

        chatty = client.run("chatty", {"lines": 2})
        assert [line.message for line in client.get_logs(chatty.id)] == ["line 1", "line 2"]
        assert [(a.status, a.executor) for a in client.get_attempts(chatty.id)] == [
            ("completed", "loop")  # an async function's call, on the server's loop
        ]

        failed = client.run("broken", {"message": "boom"})
        assert failed.status == taskloom.RunStatus.FAILED
        assert failed.error is not None
        assert (failed.error.type, failed.error.message) == ("RuntimeError", "boom")

        napping = client.submit("nap", {"seconds": 30})
        with pytest.raises(taskloom.WaitTimeoutError):
            client.wait(napping.id, timeout=0.2)
        assert client.cancel(napping.id).status == taskloom.RunStatus.CANCELLED

        listed = client.list_runs(task="adder")
        assert [r.id for r in listed] == [run.id]
        assert {r.id for r in client.iter_runs(page_size=2)} >= {run.id, chatty.id, napping.id}
        assert [r.id for r in client.list_runs(status="failed")] == [failed.id]

        assert [s["name"] for s in client.services()] == ["ticker"]
        assert client.start_service("ticker", {"period": 0.02})["state"] in {"starting", "running"}
        with pytest.raises(taskloom.TaskloomError, match="stop it first"):
            client.start_service("ticker")
        restarted = client.restart_service("ticker")
        assert restarted["state"] in {"starting", "running"}
        assert client.stop_service("ticker")["state"] == "stopped"
        assert client.service_status("ticker")["starts"] == 2
        assert client.service_logs("ticker")[0]["message"].startswith("tick ")
        with pytest.raises(taskloom.InputValidationError):
            client.start_service("ticker", {"period": "soon"})

    code, err = served.stop()
    assert code == 0, err
    # What the server recorded is in the database, for the CLI too.
    shown = served_cli.json("show", run.id, "--json")
    assert shown["run"]["result"] == 5


async def test_the_async_client_against_a_real_server(served_cli: Cli) -> None:
    served = Served(served_cli.start("serve", "server_tasks.py"))
    async with taskloom.AsyncClient(served.url) as client:
        run = await client.run("adder", {"a": 1, "b": 1})
        assert run.result == 2
        with pytest.raises(taskloom.InputValidationError):
            await client.submit("adder", {"a": 1})
        assert [r.id for r in await client.list_runs(task="adder")] == [run.id]
        assert (await client.start_service("ticker"))["name"] == "ticker"
        assert (await client.stop_service("ticker"))["state"] == "stopped"
    assert served.stop()[0] == 0


def test_tokens_from_the_cli_guard_a_server(served_cli: Cli) -> None:
    cli = served_cli
    created = cli("token", "create", "--role", "viewer", "--name", "desk")
    assert created.returncode == 0, created.stderr
    viewer = created.stdout.strip()
    assert viewer.startswith("tl_")
    operator = cli.json("token", "create", "--role", "operator", "--json")
    assert operator["role"] == "operator"
    listed = cli.json("token", "list", "--json")
    assert [t["name"] for t in listed] == ["desk", operator["name"]]
    assert all("token_hash" not in t and "token" not in t for t in listed)
    wrong = cli("token", "create", "--role", "root")
    assert wrong.returncode == 2
    assert "--role: expected viewer, operator or admin, got 'root'" in wrong.stderr

    served = Served(cli.start("serve", "server_tasks.py"))
    with taskloom.Client(served.url) as anonymous:
        assert anonymous.health()["auth"] is True
        with pytest.raises(taskloom.ClientError) as refused:
            anonymous.tasks()
        assert refused.value.status_code == 401
    with taskloom.Client(served.url, token=viewer) as client:
        assert client.list_runs() == []
        with pytest.raises(taskloom.ClientError) as forbidden:
            client.submit("adder", {"a": 1, "b": 2})
        assert forbidden.value.status_code == 403
    with taskloom.Client(served.url, token=operator["token"]) as client:
        assert client.run("adder", {"a": 1, "b": 2}).result == 3

    revoked = cli("token", "revoke", operator["id"])
    assert revoked.returncode == 0, revoked.stderr
    with taskloom.Client(served.url, token=operator["token"]) as client:
        with pytest.raises(taskloom.ClientError) as gone:
            client.list_runs()
        assert gone.value.status_code == 401
    assert cli("token", "revoke", operator["id"]).returncode == 2
    assert served.stop()[0] == 0


def test_serve_refuses_a_public_address_without_a_token(served_cli: Cli) -> None:
    result = served_cli("serve", "server_tasks.py", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "refusing to listen on an address other than loopback without a token" in (result.stderr)


def test_serve_listens_on_a_public_address_with_a_token(served_cli: Cli) -> None:
    token = served_cli("token", "create", "--role", "admin").stdout.strip()
    served = Served(served_cli.start("serve", "server_tasks.py", "--host", "0.0.0.0"))
    url = served.url.replace("0.0.0.0", "127.0.0.1")
    with taskloom.Client(url, token=token) as client:
        assert client.health()["auth"] is True
        assert "adder" in {t["name"] for t in client.tasks()}
    assert served.stop()[0] == 0


def test_serve_serves_a_folder_of_files(served_cli: Cli) -> None:
    (served_cli.cwd / "examples" / "doubling.py").write_text(
        "import taskloom\n\n\n@taskloom.task\ndef double(x: int) -> int:\n    return 2 * x\n",
        encoding="utf-8",
    )
    (served_cli.cwd / "examples" / "_private.py").write_text("raise SystemExit(3)\n")
    served = Served(served_cli.start("serve", "examples/"))
    with taskloom.Client(served.url) as client:
        names = {t["name"] for t in client.tasks()}
        assert {"adder", "greet", "double"} <= names
        assert client.run("double", {"x": 4}).result == 8
        assert client.run("greet", {"name": "Ada"}).result == "Hello, Ada!"
    assert served.stop()[0] == 0


def test_the_readme_command_serves_the_examples_and_the_page(cli: Cli) -> None:
    """`taskloom serve examples/` on the repository's own examples, as the README says."""
    shutil.rmtree(cli.cwd / "examples")
    shutil.copytree(REPO / "examples", cli.cwd / "examples")
    served = Served(cli.start("serve", "examples/"))
    assert served.database == "taskloom.db"
    page = httpx.get(served.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    with taskloom.Client(served.url) as client:
        assert client.run("adder", {"a": 1, "b": 2}).result == 3
        services = {s["name"]: s["state"] for s in client.services()}
        assert services["read_sensor"] in {"starting", "running"}  # autostart
    code, err = served.stop()
    assert code == 0, err
