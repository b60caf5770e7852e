"""What `taskloom run` shows on stderr while the run executes: log lines and progress."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..engine import RunEvent
from ..runs import Run
from .render import log_line_text

__all__ = ["RunReporter"]


class RunReporter:
    """Listens to the engine's run events and shows them on a stderr console.

    Log lines are printed as they arrive. Progress is drawn as a bar only when stderr is a
    terminal; in a pipe or a file it is left out, so the output stays line by line.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._bar: TaskID | None = None

    def on_event(self, event: RunEvent) -> None:
        if event.kind == "log" and event.line is not None:
            self.console.print(log_line_text(event.line), soft_wrap=True)
        elif event.kind == "progress":
            self._show_progress(event.run)
        elif event.kind == "retrying":
            self._show_retry(event.run)
        elif event.kind == "finished":
            self.stop()

    def note(self, message: str) -> None:
        """A line of taskloom's own, such as what happens on Ctrl-C."""
        self.console.print(Text(message, style="yellow"), soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._bar = None

    def _show_progress(self, run: Run) -> None:
        if not self.console.is_terminal or run.progress is None:
            return
        description = run.progress_message or run.task
        if self._progress is None or self._bar is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._bar = self._progress.add_task(description, total=1.0)
        self._progress.update(self._bar, completed=run.progress, description=description)

    def _show_retry(self, run: Run) -> None:
        error = run.error
        reason = f": {error.type}: {error.message}" if error is not None else ""
        self.note(f"attempt {run.attempts} of run {run.id} failed{reason}; retrying")
