"""Workflows: DAGs of steps whose results flow into other steps' inputs.

`model` (steps, Python and data forms), `references` (`${steps.x.result}`), `validation`
(checked before anything runs), `scheduler` (one workflow run's execution) and
`operations` (submit, rerun, recovery: what the engine calls).
"""

from .model import Step, StepHandle, Workflow, load_workflow
from .references import Ref

__all__ = ["Ref", "Step", "StepHandle", "Workflow", "load_workflow"]
