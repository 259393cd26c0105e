"""Prefect tasks: each stage declared once (tasks.stage), planned (tasks.graph), run cached (tasks.cache).

Importing this package declares every stage, in pipeline order.
"""

from disco_core import env  # noqa: F401  (environment defaults before prefect, torch, numba)

from . import spine, teachers, queries, student, evaluate  # noqa: E402,F401  (declare the stages)
from .run import run_stage  # noqa: E402,F401
from .stage import STAGES  # noqa: E402,F401
