"""Workflows: DAGs of steps whose results flow into other steps' inputs.

`model` (steps, Python and data forms), `limits` (how large one may be), `references`
(`${steps.x.result}`), `validation` (checked before anything runs), `scheduler` (one
workflow run's execution) and `operations` (submit, rerun, recovery: what the engine
calls).
"""

from .limits import WorkflowLimitError, WorkflowLimits
from .model import Step, StepHandle, Workflow, load_workflow
from .references import Ref, ReferenceSyntaxError

__all__ = [
    "Ref",
    "ReferenceSyntaxError",
    "Step",
    "StepHandle",
    "Workflow",
    "WorkflowLimitError",
    "WorkflowLimits",
    "load_workflow",
]
