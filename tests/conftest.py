"""Shared fixtures. Environment first: a throwaway Prefect home (never ~/.prefect), quiet loads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PREFECT_HOME = tempfile.mkdtemp(prefix="disco-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["IR_DATASETS_HOME"] = tempfile.mkdtemp(prefix="disco-irds-")
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

import tasks  # noqa: E402,F401  (the remaining environment defaults)

import pytest  # noqa: E402

MTRAG = Path(os.environ.get("DISCO_MTRAG_PATH", ROOT.parent / "shared" / "data" / "mtrag"))


@pytest.fixture(scope="session")
def mtrag_path() -> Path:
    if not (MTRAG / "corpus.jsonl").exists():
        pytest.skip(f"MTRAG not found at {MTRAG}")
    return MTRAG


@pytest.fixture(scope="session")
def encoder():
    from disco_core.encoder import SpladeEncoder

    return SpladeEncoder("splade-tiny", max_length=128, batch_size=8, token_budget=512)


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
