"""The exceptions of packages and command tasks: a branch of `TaskloomError`."""

from __future__ import annotations

from ..exceptions import TaskloomError

__all__ = [
    "CommandTaskError",
    "ManifestError",
    "ManifestWarning",
    "PackageError",
    "UnknownPackageError",
]


class PackageError(TaskloomError):
    """A package operation failed."""


class UnknownPackageError(PackageError, LookupError):
    """No package is recorded under this name: `taskloom packages` lists them."""


class ManifestError(PackageError):
    """A manifest is missing or does not describe the package's tasks correctly."""


class ManifestWarning(UserWarning):
    """A task was left out of a manifest, because the manifest's reader would refuse it."""


class CommandTaskError(TaskloomError):
    """A command task's process failed: it exited with an error or wrote no valid result."""
