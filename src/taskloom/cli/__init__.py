"""The `taskloom` command line (`app.py` assembles it, one module per command or group;
`taskloom --help` lists them)."""

from .app import app, main

__all__ = ["app", "main"]
