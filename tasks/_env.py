"""Environment defaults set before Prefect, torch or numba are imported (a user's values win)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULTS = {
    # A project-local Prefect home: never ~/.prefect, and no telemetry from a research tool.
    "PREFECT_HOME": str(ROOT / ".prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
    # numba (ranx, the index) compiles once and reuses the machine code from here.
    "NUMBA_CACHE_DIR": str(ROOT / ".cache" / "numba"),
    # ir_datasets (CAsT, iKAT parsing) keeps its home beside the project's other caches.
    "IR_DATASETS_HOME": str(ROOT / ".cache" / "ir_datasets"),
    # Spinning OpenMP threads starve a 2-core machine shared with tokenizers and numba.
    "OMP_WAIT_POLICY": "PASSIVE",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

for key, value in DEFAULTS.items():
    os.environ.setdefault(key, value)
