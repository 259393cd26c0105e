"""What the cache guarantees: outputs checked by content, a lock per stage folder, kills that leave
nothing half-recorded, concurrent runs that keep apart, killed flow runs marked crashed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from disco_core.config_files import load_config

ROOT = Path(__file__).resolve().parents[1]
LOG = logging.getLogger("test")


def run_direct(cfg, targets):
    """Execute the planned instances in order, in this process, without Prefect."""
    from tasks.graph import plan
    from tasks.execute import execute

    graph, ids = plan(cfg, targets)
    results = {}
    for node in graph.order(ids):
        inputs = {k: [results[i] for i in v] if isinstance(v, list) else results[v] for k, v in node.needs.items()}
        results[node.id] = execute(node, inputs, False, LOG)
    return results


def ran(results) -> set[str]:
    return {i.split("[")[0] for i, r in results.items() if not r.cache_hit}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    cfg = load_config(None, [f"work_dir={work}"])
    assert ran(run_direct(cfg, ["index"])) == {"ingest", "encode_corpus", "index"}
    return cfg


@pytest.mark.slow
def test_outputs_are_checked_by_content(indexed, tmp_path):
    results = run_direct(indexed, ["index"])
    assert ran(results) == set()
    postings = results["index[embedded]"].folder / "inverted" / "shard-00000" / "docs.npy"
    stat = postings.stat()
    data = bytearray(postings.read_bytes())
    data[-8:] = bytes(reversed(data[-8:]))  # same size, other postings
    postings.write_bytes(bytes(data))
    os.utime(postings, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime put back
    assert postings.stat().st_mtime_ns == stat.st_mtime_ns and postings.stat().st_size == stat.st_size
    assert ran(run_direct(indexed, ["index"])) == {"index"}
    # a copied work dir (new inodes and ctimes, same contents) is all hits: checked by content
    copy = tmp_path / "copy"
    shutil.copytree(indexed.work_path, copy)
    assert ran(run_direct(indexed.model_copy(update={"work_dir": str(copy)}), ["index"])) == set()


@pytest.mark.slow
def test_temporary_files_are_never_outputs_and_are_swept(indexed):
    results = run_direct(indexed, ["index"])
    folder = results["index[embedded]"].folder
    stray = folder / "inverted" / "shard-00000" / ".docs.npy.abc123.tmp"
    stray.write_bytes(b"half a file")
    assert ran(run_direct(indexed, ["index"])) == set()  # a leftover is no output: still a hit
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert not any(name.endswith(".tmp") for name in manifest["files"])
    (folder / "inverted" / "shard-00000" / "meta.json").unlink()
    assert ran(run_direct(indexed, ["index"])) == {"index"}
    assert not stray.exists()  # swept before the rebuild


KILLED_INDEX = """
import os, sys, time
import numpy as np
import tasks
from disco_core.config_files import load_config
from tests.test_reliability import run_direct
from disco_core import index_build
real_put = index_build._Files.put_runs
def stuck_put(self, *args):
    real_put(self, *args)  # the first chunk's postings written, then stuck
    print("writing", flush=True)
    time.sleep(600)
index_build._Files.put_runs = stuck_put
run_direct(load_config(None, [f"work_dir={sys.argv[1]}"]), ["index"])
"""


@pytest.mark.slow
def test_an_index_build_killed_mid_write_records_nothing_but_finished_files(indexed):
    results = run_direct(indexed, ["index"])
    folder = results["index[embedded]"].folder
    shutil.rmtree(folder / "inverted")
    (folder / "_manifest.json").unlink()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_INDEX, str(indexed.work_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    shard = folder / "inverted" / "shard-00000"
    assert any(p.name.endswith(".tmp") for p in shard.iterdir())  # the kill's leftover
    assert not (shard / "meta.json").exists() and not (folder / "_manifest.json").exists()
    assert ran(run_direct(indexed, ["index"])) == {"index"}
    files = json.loads((folder / "_manifest.json").read_text())["files"]
    assert sorted(files) == ["inverted/shard-00000/" + n for n in ("codebook.npy", "doc_ids.json", "docs.npy",
                                                                   "meta.json", "skips.npy", "weights.npy")] + ["inverted/shards.json"]
    assert not any(p.name.endswith(".tmp") for p in shard.iterdir())


@pytest.mark.slow
def test_a_stage_another_process_builds_is_waited_for_or_named(indexed):
    from tasks import cache
    from tasks.graph import plan
    from tasks.execute import execute

    graph, ids = plan(indexed, ["index"])
    node = graph.nodes[ids[0]]
    results = run_direct(indexed, ["encode_corpus"])
    held = threading.Event()
    release = threading.Event()

    def holder():
        with cache.exclusive(node.folder, 5, LOG.info):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    try:
        busy = node.cfg.model_copy(update={"run": node.cfg.run.model_copy(update={"lock_timeout": 0.5})})
        waiting = type(node)(**{**node.__dict__, "cfg": busy})
        inputs = {"encode_corpus": results["encode_corpus[embedded]"]}
        with pytest.raises(cache.StageBusy, match=rf"is being built by pid {os.getpid()} .* waited 0 s"):
            execute(waiting, inputs, False, LOG)
        # with time to wait, the second run gets the lock once it is free, and finds a hit
        threading.Timer(0.5, release.set).start()
        assert execute(node, inputs, False, LOG).cache_hit
    finally:
        release.set()
        thread.join()


CONCURRENT = """
import sys
import tasks
from disco_core.config_files import load_config
from tests.test_reliability import run_direct
cfg = load_config(None, [f"work_dir={sys.argv[1]}", f"encoder.query_max_length={sys.argv[2]}"])
run_direct(cfg, ["encode_queries[embedded/conversation]"])
"""


@pytest.mark.slow
def test_concurrent_runs_with_other_settings_keep_their_outputs_apart(indexed):
    """Two processes at once on one work dir, one setting apart: each config's vectors are its own
    (they share the ingest stage: one builds it, the other waits and takes it as a hit)."""
    import numpy as np

    from disco_core import schemas, vectors
    from disco_core.conversation import ConversationFormatter
    from disco_core.encoder import SpladeEncoder
    from tasks.graph import plan

    work = indexed.work_path.parent / "concurrent"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(work), str(n)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for n in (24, 64)]
    assert [p.wait(600) for p in procs] == [0, 0]
    for n in (24, 64):
        cfg = load_config(None, [f"work_dir={work}", f"encoder.query_max_length={n}"])
        results = run_direct(cfg, ["encode_queries[embedded/conversation]"])
        assert ran(results) == set()  # each config finds its own outputs, certified by its own key
        graph, ids = plan(cfg, ["encode_queries[embedded/conversation]"])
        stored, qids = vectors.load_vectors(results[ids[0]]["vectors"])
        encoder = SpladeEncoder("splade-tiny", max_length=n)
        turns = schemas.read_table("turns", results["ingest[embedded]"]["turns"]).to_pylist()
        formatter = ConversationFormatter(encoder.tokenizer, n, cfg.conversation.answers)
        expected = encoder.encode(formatter.format_many(turns))
        assert qids == [t["query_id"] for t in turns]
        assert np.abs((stored - expected).toarray()).max() < 1e-5


def test_killed_flow_runs_are_marked_crashed(prefect_harness):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from flows.pipeline import mark_crashed, run_tags

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    @flow(name="disco-killed")
    def killed():
        return None

    tags = [t for t in run_tags() if not t.startswith("pid:")] + [f"pid:{dead.pid}"]
    with get_client(sync_client=True) as client:
        created = client.create_flow_run(killed, tags=tags, state=Running())
        assert mark_crashed() >= 1
        assert client.read_flow_run(created.id).state.type.value == "CRASHED"
