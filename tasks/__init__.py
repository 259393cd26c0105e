"""Prefect tasks: each wraps one disco_core stage with caching, logging and artifacts."""

from . import _env  # noqa: F401  (must run before prefect/torch/numba imports)
