"""Progress: a bar under a pseudo-terminal, log lines elsewhere, events for subscribers, and the
long loops (encoding, training, downloads) reporting through it with their old callbacks intact."""

import hashlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from disco_core.progress import Progress, ProgressEvent, display_mode, progress, subscribed, track

ROOT = Path(__file__).resolve().parents[1]


def test_log_mode_writes_counts_rate_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="disco.progress")
    with progress(40, "encoding passages", unit="passages", mode="log", interval=0) as bar:
        for _ in range(4):
            bar.update(10, loss=0.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "disco.progress"]
    assert lines[0].startswith("encoding passages: 10/40 passages (25%), ") and "passages/s" in lines[0]
    assert "left" in lines[0] and "loss=0.5" in lines[0]
    assert lines[-1].startswith("encoding passages: 40/40 passages (100%)") and "done in" in lines[-1]


def test_short_steps_and_off_mode_stay_quiet(caplog):
    caplog.set_level(logging.INFO, logger="disco.progress")
    with progress(5, "quick", mode="log", interval=60) as bar:
        bar.update(5)
    for _ in track(range(3), "silent", mode="off"):
        pass
    assert not [r for r in caplog.records if r.name == "disco.progress"]


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("DISCO_PROGRESS", "off")
    assert display_mode() == "off"
    monkeypatch.delenv("DISCO_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert display_mode() == "log"


def test_subscribers_get_first_throttled_and_last_events_and_a_failure_is_dropped(caplog):
    seen: list[ProgressEvent] = []

    def broken(event):
        raise RuntimeError("artifact service down")

    with subscribed(seen.append, every=3600, after=0), subscribed(broken, every=0, after=0):
        with progress(10, "scoring", unit="queries", mode="off") as bar:
            for _ in range(10):
                bar.update(1)
    assert [(e.done, e.finished) for e in seen] == [(1, False), (10, True)]  # first, then last (throttled)
    assert seen[-1].fraction == 1.0 and seen[-1].total == 10 and seen[-1].unit == "queries"
    assert "artifact service down" in caplog.text  # logged once, the work went on


def test_subscriptions_belong_to_their_context():
    seen = []
    other = []

    def elsewhere():
        with progress(1, "other thread", mode="off") as bar:
            bar.update(1)
        other.append(True)

    with subscribed(seen.append, every=0, after=0):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        with progress(2, "mine", mode="off") as bar:
            bar.update(2)
    assert other and {e.desc for e in seen} == {"mine"}


def _child(code: str, tty: bool) -> str:
    """Run python ``code`` with stderr on a pseudo-terminal (or a pipe); return what it wrote there."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DISCO_PROGRESS")}
    env.update(PYTHONPATH=str(ROOT), DISCO_PROGRESS_DELAY="0", DISCO_PROGRESS_INTERVAL="0")
    if not tty:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        return done.stderr
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


CHILD = """
import logging, time
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from disco_core.progress import progress
with progress(30, "encoding passages", unit="passages") as bar:
    for _ in range(3):
        time.sleep(0.05)
        bar.update(10)
"""


def test_a_terminal_gets_a_bar_and_a_pipe_gets_log_lines():
    terminal = _child(CHILD, tty=True)
    assert "encoding passages: 100%" in terminal and "30/30" in terminal and "passages/s" in terminal
    assert "\r" in terminal and "disco.progress" not in terminal
    piped = _child(CHILD, tty=False)
    assert "\r" not in piped and "%|" not in piped  # no bar noise in CI logs
    assert "disco.progress encoding passages: 30/30 passages (100%)" in piped


# ------------------------------------------------------------------ the long loops
@pytest.mark.slow
def test_encoder_reports_progress_and_keeps_its_callback(encoder):
    events, calls = [], []
    texts = [f"passage number {i} about bridges" for i in range(20)]
    with subscribed(events.append, every=0, after=0):
        encoder.encode(texts, progress=lambda d, n: calls.append((d, n)), desc="encoding passages")
    assert calls[-1] == (20, 20)
    assert events[-1].finished and events[-1].done == 20 and events[-1].desc == "encoding passages"


@pytest.mark.slow
def test_training_reports_steps_and_loss(encoder, tmp_path):
    from disco_core.config import TrainConfig
    from disco_core.distill import Example
    from disco_core.trainer import Trainer

    rng = np.random.default_rng(0)
    docs = encoder.encode([f"the tower number {i} was built in {1800 + i}" for i in range(30)])
    examples = [Example(f"q{i}", f"when was tower {i} built?", np.asarray([i]), rng.permutation(30),
                        np.sort(rng.random(30).astype(np.float32))[::-1]) for i in range(8)]
    settings = TrainConfig(batch_size=4, epochs=2, negatives=2, negative_ranks=[2, 20], max_length=16, log_every=1)
    events, records = [], []
    with subscribed(lambda e: events.append(e) if e.desc == "training" else None, every=0, after=0):
        Trainer("splade-tiny", settings, docs, tmp_path / "t").train(examples, progress=records.append)
    assert events[0].total == 4 and events[0].done == 1 and events[-1].finished and events[-1].done == 4
    assert "loss" in events[-1].postfix and events[-1].postfix["epoch"] == 2
    assert [r["step"] for r in records] == [1, 2, 3, 4]


def test_download_reports_bytes(tmp_path):
    from disco_core.download import RemoteFile, fetch
    from loopback import StaticServer

    payload = bytes(range(256)) * 2000
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "data.bin").write_bytes(payload)
    server = StaticServer(tmp_path / "www")
    events = []
    try:
        with subscribed(events.append, every=0, after=0):
            fetch(RemoteFile("data.bin", f"{server.url}/data.bin", size=len(payload),
                             md5=hashlib.md5(payload).hexdigest()), tmp_path / "cache")
    finally:
        server.close()
    assert events[-1].finished and events[-1].done == events[-1].total == len(payload)
    assert events[-1].unit == "B" and events[-1].desc == "downloading data.bin"


def test_quick_steps_send_subscribers_nothing_and_resumed_steps_rate_their_own_units():
    seen = []
    with subscribed(seen.append, every=0, after=30):
        with progress(3, "quick", mode="off") as bar:
            bar.update(3)
    assert seen == []
    resumed = Progress(100, "downloading", unit="B", initial=60, mode="off")
    resumed.update(20)
    event = resumed.event()
    assert event.done == 80 and event.fraction == 0.8
    assert event.rate == pytest.approx(20 / event.elapsed)


def test_progress_without_total_counts():
    bar = Progress(None, "streaming", unit="rows", mode="off")
    bar.update(5)
    bar.close()
    event = bar.event(finished=True)
    assert event.fraction is None and event.eta is None and event.line().startswith("streaming: 5 rows")
