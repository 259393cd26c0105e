"""The process environment and the project's paths, set in one place.

Imported first by ``disco_core`` (and so by everything that imports it): the defaults below are set
before torch, numba, ir_datasets or Prefect are imported. A value the user already set wins.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# The source checkout (``disco_core``'s parent): data/, .cache/ and .prefect/ live beside the code.
ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Project caches (numba, models, datasets, fingerprints): ``$DISCO_CACHE_DIR`` or ``.cache``."""
    return Path(os.environ.get("DISCO_CACHE_DIR") or ROOT / ".cache")


DEFAULTS = {
    # Spinning OpenMP threads starve a 2-core machine shared with tokenizers and numba.
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # numba (ranx, the index) compiles once and reuses the machine code from here.
    "NUMBA_CACHE_DIR": str(cache_dir() / "numba"),
    # ir_datasets (CAsT, iKAT parsing) keeps its home beside the project's other caches.
    "IR_DATASETS_HOME": str(cache_dir() / "ir_datasets"),
    # A project-local Prefect home: never ~/.prefect, and no telemetry from a research tool.
    "PREFECT_HOME": str(ROOT / ".prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
}


# One numba parallel region at a time per process: two launched at once from two threads (stages
# run in threads: ranx's metrics in ``evaluate`` beside another stage's ranx or parallel kernel)
# abort the whole process under numba's OpenMP layer. Measured here, on a clean clone.
NUMBA_PARALLEL = threading.Lock()


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


apply_defaults()
