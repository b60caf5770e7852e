"""Command tasks: runs of a tiny command per second, against bare asyncio subprocesses.

    python benchmarks/bench_commands.py [--runs 400] [--concurrency 8]

The command is `sh -c 'echo {"ok": true} > OUT'` given the contract's arguments, so the
cost measured is taskloom's: the arguments file, the process group, reading stdout and
stderr into the run's log, the output file, and the run recorded on a SQLite file. The
baseline starts the same command with `asyncio.create_subprocess_exec`, as many at once,
writing the same arguments file and reading the same output file, and records nothing.
A second figure runs the same commands as one Fractal `parallel` task (child runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from _common import database_file, machine, report

import taskloom
from taskloom.packages import FractalOperation

SCRIPT = 'echo "{\\"ok\\": true}" > "$4"'
COMMAND = ["sh", "-c", SCRIPT, "sh"]


async def bare(n: int, concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int, folder: Path) -> None:
        async with limit:
            args, out = folder / f"{i}.args.json", folder / f"{i}.out.json"
            args.write_text(json.dumps({"i": i}))
            process = await asyncio.create_subprocess_exec(
                *COMMAND,
                "--args-json",
                str(args),
                "--out-json",
                str(out),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            await process.communicate()
            json.loads(out.read_text())

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        await asyncio.gather(*(one(i, Path(folder)) for i in range(n)))
        return n / (time.perf_counter() - start)


async def with_taskloom(n: int, concurrency: int, url: str | None) -> tuple[float, float]:
    command = taskloom.CommandTask(
        "tiny", COMMAND, options=taskloom.TaskOptions(concurrency=concurrency)
    )
    parallel = FractalOperation("tiny_parallel", fractal_type="parallel", compute=command)
    with database_file(url=url) as path:
        async with taskloom.Engine(path, tasks=[command, parallel]) as engine:
            for _ in range(5):  # warm up
                await engine.run(command, {})
            start = time.perf_counter()
            runs = [await engine.submit(command, {}) for _ in range(n)]
            done = await engine.wait_many([r.id for r in runs])
            rate = n / (time.perf_counter() - start)
            assert all(r.status == taskloom.RunStatus.COMPLETED for r in done)
            start = time.perf_counter()
            fanned = await engine.run(parallel, {"zarr_urls": [f"/img/{i}" for i in range(n)]})
            fan_rate = n / (time.perf_counter() - start)
            assert fanned.status == taskloom.RunStatus.COMPLETED, fanned.error
    return rate, fan_rate


async def main(n: int, concurrency: int, url: str | None) -> None:
    baseline = await bare(n, concurrency)
    rate, fan_rate = await with_taskloom(n, concurrency, url)
    report(
        f"command tasks, {n:,} runs of `sh -c` writing its output file, {concurrency} at once",
        {
            "machine": machine(),
            "bare asyncio subprocesses": f"{baseline:,.0f} commands/s",
            "taskloom command task runs": f"{rate:,.0f} runs/s ({rate / baseline:.2f}x bare)",
            "as one Fractal parallel task": f"{fan_rate:,.0f} items/s "
            f"({fan_rate / baseline:.2f}x bare)",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", metavar="URL", help="default: a fresh SQLite file")
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.concurrency, options.database))
