"""The `taskloom` command line: `run`, `tasks`, `runs`, `show`, `cancel` and `db`."""

from .app import app, main

__all__ = ["app", "main"]
