"""Task packages: the command-line contract, command tasks, manifests and collection.

- `contract.py`: `run_cli`, a task as an executable speaking Fractal's contract.
- `command.py`: `CommandTask`, a task run as a subprocess in its own process group.
- `manifest.py`: taskloom and Fractal manifests, generated from a package's code.
- `fractal.py`: Fractal's `parallel` and `compound` types as operations on child runs.
- `definitions.py`: the tasks a recorded package registers, as `<package>/<task>`.
- `collection.py`: `PackageCollector`, one virtual environment per package version.
"""

from __future__ import annotations

from .collection import PackageCollector, PackageInstallError, ready_package_tasks
from .command import CommandTask
from .contract import run_cli
from .errors import (
    CommandTaskError,
    ManifestError,
    ManifestWarning,
    PackageError,
    UnknownPackageError,
)
from .fractal import FractalOperation
from .manifest import fractal_manifest, taskloom_manifest

__all__ = [
    "CommandTask",
    "CommandTaskError",
    "FractalOperation",
    "ManifestError",
    "ManifestWarning",
    "PackageCollector",
    "PackageError",
    "PackageInstallError",
    "UnknownPackageError",
    "fractal_manifest",
    "ready_package_tasks",
    "run_cli",
    "taskloom_manifest",
]
