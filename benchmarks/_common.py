"""Shared helpers for the benchmarks: environment, corpus sampling, timing, memory, output.

Import this module before torch or numba: importing ``tasks`` sets the project's environment
defaults (``OMP_WAIT_POLICY=PASSIVE``, ``NUMBA_CACHE_DIR``, quiet tokenizers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import tasks  # noqa: F401  (environment defaults; must come before torch/numba)

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench"


def docs_arg(value: str) -> int | None:
    """``--docs``: a positive number of documents, or ``all`` (returned as None)."""
    if value == "all":
        return None
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError("--docs must be a positive number or 'all'")
    return n


def sample_positions(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded random sample of ``n`` documents (all when None), in corpus order."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load average (1 min, at start)": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def print_header(title: str, info: dict) -> None:
    print(f"== {title}")
    for key, value in info.items():
        print(f"   {key}: {value}")


@contextlib.contextmanager
def native_stdout_silenced():
    """Silence what native code (Rust, C) prints to the process's stdout, e.g. build logs."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every ``interval`` s.

    ``peak_mib`` is the highest RSS seen; ``delta_mib`` how far above the RSS at entry it went
    (what the block itself needed, as far as the allocator returns memory between blocks)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self._process = psutil.Process()
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def delta_mib(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20


def print_table(headers: list[str], rows: list[list], aligns: str | None = None) -> None:
    """A plain fixed-width table; ``aligns`` is one of ``<``/``>`` per column (text left, numbers right)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    aligns = aligns or "<" + ">" * (len(headers) - 1)
    for n, row in enumerate(cells):
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, aligns, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def write_json(path: str | None, figures: dict) -> None:
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=_jsonable) + "\n")
    print(f"figures written to {path}")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
