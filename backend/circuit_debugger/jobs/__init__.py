"""Long work as jobs: submitted, tracked, cancellable, stored; run by worker processes or Ray
actors that hold their own model copies (see executors.py and manager.py)."""

from .executors import Cancelled, LocalExecutor, RayExecutor
from .manager import KINDS, JobManager, recipes_for

__all__ = ["Cancelled", "JobManager", "KINDS", "LocalExecutor", "RayExecutor", "recipes_for"]
