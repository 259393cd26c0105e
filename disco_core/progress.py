"""Progress a person can watch: a bar in a terminal, a log line now and then elsewhere, and events.

``with progress(total, "encoding passages", unit="passages") as bar: ... bar.update(n)``

- stderr is a terminal: a tqdm bar with counts, rate and time left (shown only once the step has
  run ``delay`` seconds, so quick calls print nothing);
- otherwise (CI, Prefect workers, a file): one ``logging`` line on the ``disco.progress`` logger
  every ``interval`` seconds (15 by default) and a last one when such a step ends;
- ``DISCO_PROGRESS=bar|log|off`` overrides the choice; ``DISCO_PROGRESS_INTERVAL`` sets the seconds
  between log lines, ``DISCO_PROGRESS_DELAY`` the seconds before a bar appears. ``CI`` set in the
  environment means log lines, never a bar.

Subscribers see :class:`ProgressEvent` s of every step started inside ``with subscribed(callback):``
(a context variable: a Prefect task that subscribes sees its own steps, not another task's). Like a
bar, a subscriber hears of a step only once it has run ``after`` seconds (1 by default: a thousand
one-text encodings make no artifacts); then it receives the next update, at most one every
``every`` seconds after that, and the last. A subscriber that raises is logged and dropped for that
step: a failed progress artifact never stops the work.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger("disco.progress")

MODES = ("bar", "log", "off")
DEFAULT_INTERVAL = 15.0


@dataclass(frozen=True)
class ProgressEvent:
    """One step's state: what subscribers receive."""

    key: str  # unique per step in this process ("3:encoding passages")
    desc: str
    done: int
    total: int | None
    unit: str
    elapsed: float  # seconds since the step started
    finished: bool
    postfix: dict = field(default_factory=dict)
    initial: int = 0  # units already done when the step started (a resumed download)

    @property
    def rate(self) -> float | None:
        """Units per second since the start (this run's units only)."""
        done = self.done - self.initial
        return done / self.elapsed if self.elapsed > 0 and done > 0 else None

    @property
    def fraction(self) -> float | None:
        """Done over total, 0..1 (None without a total)."""
        return min(1.0, self.done / self.total) if self.total else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the mean rate so far."""
        if self.total is None or not self.rate:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def line(self) -> str:
        """``encoding passages: 1,200/19,687 passages (6%), 85.3 passages/s, 3m36s left``"""
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.fraction is not None:
            parts[0] += f" ({self.fraction:.0%})"
        if self.rate:
            parts.append(f"{self.rate:,.1f} {self.unit}/s")
        if self.finished:
            parts.append(f"done in {_duration(self.elapsed)}")
        elif self.eta is not None:
            parts.append(f"{_duration(self.eta)} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass(eq=False)  # hashed by identity: one entry per subscription
class _Subscriber:
    callback: Callable[[ProgressEvent], None]
    every: float
    after: float


_SUBSCRIBERS: contextvars.ContextVar[tuple[_Subscriber, ...]] = contextvars.ContextVar("disco_progress", default=())
_KEYS = itertools.count(1)


@contextlib.contextmanager
def subscribed(callback: Callable[[ProgressEvent], None], every: float = 5.0, after: float = 1.0) -> Iterator[None]:
    """Send ``callback`` the events of every step started inside the block (this context only)
    that runs at least ``after`` seconds: then at most one every ``every`` seconds, and the last."""
    token = _SUBSCRIBERS.set(_SUBSCRIBERS.get() + (_Subscriber(callback, every, after),))
    try:
        yield
    finally:
        _SUBSCRIBERS.reset(token)


def display_mode() -> str:
    """``bar`` in a terminal, ``log`` elsewhere (or when ``CI`` is set), unless DISCO_PROGRESS says."""
    chosen = os.environ.get("DISCO_PROGRESS", "").strip().lower()
    if chosen in MODES:
        return chosen
    if os.environ.get("CI"):
        return "log"
    stream = sys.stderr
    return "bar" if stream is not None and hasattr(stream, "isatty") and stream.isatty() else "log"


def _seconds(variable: str, default: float) -> float:
    try:
        return float(os.environ.get(variable, default))
    except ValueError:
        return default


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


class Progress:
    """One long step. Use :func:`progress`; call :meth:`update` as work completes."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", initial: int = 0,
                 mode: str | None = None, interval: float | None = None, delay: float | None = None,
                 unit_scale: bool = False):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = self.initial = initial
        self.mode = mode or display_mode()
        self.interval = _seconds("DISCO_PROGRESS_INTERVAL", DEFAULT_INTERVAL) if interval is None else interval
        delay = _seconds("DISCO_PROGRESS_DELAY", 1.0) if delay is None else delay
        self.key = f"{next(_KEYS)}:{desc}"
        self.postfix: dict = {}
        self._start = self._last_line = time.monotonic()
        self._lines = 0
        self._lock = threading.RLock()
        self._subscribers = {s: None for s in _SUBSCRIBERS.get()}  # subscriber -> last call
        self._bar = None
        self._closed = False
        if self.mode == "bar":
            from tqdm.auto import tqdm

            sized = _columns() > 0  # a terminal of width 0 (some pseudo-terminals) would get an empty bar
            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, delay=delay, file=sys.stderr,
                             dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 20,
                             unit_scale=unit_scale, leave=True)

    def event(self, finished: bool = False) -> ProgressEvent:
        return ProgressEvent(self.key, self.desc, self.done, self.total, self.unit,
                             time.monotonic() - self._start, finished, dict(self.postfix), self.initial)

    def update(self, n: int = 1, **postfix) -> None:
        """``n`` more units done; keyword arguments are shown beside the counts (``loss=0.41``)."""
        with self._lock:
            self.done += n
            if postfix:
                self.postfix.update(postfix)
            if self._bar is not None:
                if postfix:
                    self._bar.set_postfix(self.postfix, refresh=False)
                self._bar.update(n)
            elif self.mode == "log" and time.monotonic() - self._last_line >= self.interval:
                self._log_line(finished=False)
            self._notify(finished=False)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            elif self.mode == "log" and self._lines:
                self._log_line(finished=True)  # a step that logged progress also says it ended
            self._notify(finished=True)

    def _log_line(self, finished: bool) -> None:
        log.info("%s", self.event(finished).line())
        self._last_line = time.monotonic()
        self._lines += 1

    def _notify(self, finished: bool) -> None:
        if not self._subscribers:
            return
        now = time.monotonic()
        event = None
        for sub, last in list(self._subscribers.items()):
            if now - self._start < sub.after:
                continue  # a quick step: nothing to show
            if not finished and last is not None and now - last < sub.every:
                continue
            event = event or self.event(finished)
            try:
                sub.callback(event)
                self._subscribers[sub] = now
            except Exception as exc:  # noqa: BLE001 - progress must never stop the work
                log.warning("progress subscriber %r failed (%s: %s); it is dropped for %r",
                            sub.callback, type(exc).__name__, exc, self.desc)
                del self._subscribers[sub]


@contextlib.contextmanager
def progress(total: int | None, desc: str, unit: str = "it", **options) -> Iterator[Progress]:
    """A :class:`Progress` for the block, closed (bar finished, last event sent) on the way out.

    ``options``: ``initial`` (units already done, e.g. a resumed download), ``mode`` (bar, log,
    off), ``interval`` (seconds between log lines), ``delay`` (seconds before a bar appears),
    ``unit_scale`` (``1.2M`` instead of ``1200000``, for bytes)."""
    bar = Progress(total, desc, unit, **options)
    try:
        yield bar
    finally:
        bar.close()


def track(items: Iterable, desc: str, total: int | None = None, unit: str = "it", **options) -> Iterator:
    """Iterate ``items`` with progress (``total`` defaults to ``len(items)`` where it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(total, desc, unit, **options) as bar:
        for item in items:
            yield item
            bar.update(1)
