"""A single-node Slurm cluster for the tests: `munged`, `slurmctld` and `slurmd` of Debian's
`slurm-wlm`, started as the current user (root, as in CI) in a folder of the test's own.

Each daemon runs in the foreground as a child of the test, on free ports, with its key,
socket, state and logs in that folder; `SLURM_CONF` (in `environment`) points the Slurm
commands (`sbatch`, `squeue`, `scancel`, and so `dask_jobqueue`) at it. Nothing needs
systemd or cgroups: processes are tracked by `proctrack/linuxproc`, tasks are not
confined (`task/none`). The node is declared with two CPUs whatever the machine has
(`config_overrides`), so that two one-core jobs always run side by side.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

#: The programs a Slurm cluster of the tests needs (Debian: slurm-wlm, slurm-client, munge).
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SingleNodeSlurm:
    """One controller and one compute node on this machine, in `root`."""

    def __init__(self, root: Path, *, cpus: int = 2, memory_mb: int = 2048) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]  # slurmctld and slurmd check it
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.munge_socket = root / "munge" / "munge.socket"
        self.conf = root / "slurm.conf"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def environment(self) -> dict[str, str]:
        """What the Slurm commands of this cluster need in their environment."""
        return {"SLURM_CONF": str(self.conf)}

    # start ----------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        self._start_munge(timeout)
        self._write_conf()
        conf = str(self.conf)
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", conf])
        self._spawn("slurmd", ["slurmd", "-D", "-f", conf, "-N", self.node])
        self._wait(self._node_idle, timeout, "the Slurm node idle")

    def _start_munge(self, timeout: float) -> None:
        keys = self.root / "munge-key"
        keys.mkdir(mode=0o700)
        key = keys / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket.parent.mkdir(mode=0o755)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",  # root, and a socket folder of the test's own
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={keys / 'munged.pid'}",
                f"--seed-file={keys / 'munged.seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
        )
        self._wait(self.munge_socket.exists, timeout, "the munge socket")

    def _write_conf(self) -> None:
        root = self.root
        for folder in ("state", "spool"):
            (root / folder).mkdir()
        node = self.node
        settings = {
            "ClusterName": "taskloom",
            "SlurmctldHost": f"{node}(127.0.0.1)",
            "SlurmctldPort": _free_port(),
            "SlurmdPort": _free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "CredType": "cred/munge",
            "StateSaveLocation": root / "state",
            "SlurmdSpoolDir": root / "spool",
            "SlurmctldPidFile": root / "slurmctld.pid",
            "SlurmdPidFile": root / "slurmd.pid",
            "SlurmctldLogFile": root / "log" / "slurmctld.log",
            "SlurmdLogFile": root / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "SlurmdParameters": "config_overrides",
            "ReturnToService": 2,
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "KillWait": 5,
        }
        lines = [f"{name}={value}" for name, value in settings.items()]
        lines.append(
            f"NodeName={node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN"
        )
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, args: list[str]) -> None:
        (self.root / "log").mkdir(exist_ok=True)
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - kept open by the child
        try:
            self.processes[name] = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.environment},
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}): {self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s: {self.logs()}")
            time.sleep(0.1)

    # state ----------------------------------------------------------------------------
    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A Slurm command on this cluster (`sinfo`, `squeue`, ...), its output as text."""
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env={**os.environ, **self.environment},
            timeout=30,
            check=False,
        )

    def _node_idle(self) -> bool:
        found = self.command("sinfo", "--noheader", "--Node", "--format=%T")
        return found.returncode == 0 and found.stdout.split() == ["idle"]

    def jobs(self) -> list[str]:
        """The ids of the jobs the controller holds (pending, running or ending)."""
        found = self.command("squeue", "--noheader", "--format=%i")
        if found.returncode != 0:
            raise RuntimeError(f"squeue failed: {found.stderr}")
        return found.stdout.split()

    def _jobs_left(self) -> bool:
        try:
            return bool(self.jobs())
        except (RuntimeError, subprocess.TimeoutExpired):
            return False  # the controller does not answer: nothing more to wait for

    def logs(self) -> str:
        """The last lines of each daemon's log, for a failure's message."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").strip().splitlines()[-15:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # stop -----------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Cancel the jobs left, then stop the daemons (slurmd's jobs would outlive it)."""
        controller = self.processes.get("slurmctld")
        if controller is not None and controller.poll() is None:
            self.command("scancel", "--full", "--user", str(os.getuid()))
            deadline = time.monotonic() + timeout
            while self._jobs_left() and time.monotonic() < deadline:
                time.sleep(0.1)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
