"""Sharded encoding on the embedded corpus with splade-tiny: shards equal one whole-corpus encode,
bit for bit; a run killed between shards resumes at the next one; a changed shard re-encodes alone."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from conftest import ROOT
from disco_core import datasets, schemas
from disco_core.encoder import SpladeEncoder, document_text
from disco_core.errors import ConfigError
from disco_core.shards import (ShardSpec, encode_shard, encode_shards, plan_shards, read_shard, shard_done,
                               vector_path)
from disco_core.vectors import load_vector_files

SHARD = 100  # 325 passages: shards of 100, 100, 100, 25
WINDOW = 50  # the encoder's sort window: shard boundaries are multiples of it


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """The embedded corpus as a corpus table, in small row groups (a shard spans several)."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.parquet"
    table = schemas.validate("corpus", datasets.load("embedded").corpus)
    pq.write_table(table, path, row_group_size=37)
    return path


@pytest.fixture(scope="module")
def windowed(encoder):
    return SpladeEncoder("splade-tiny", max_length=128, batch_size=8, token_budget=512, model_obj=encoder.model,
                         tokenizer=encoder.tokenizer, sort_window=WINDOW)


@pytest.fixture(scope="module")
def whole(corpus_file, windowed):
    """The corpus encoded in one call."""
    table = pq.read_table(corpus_file)
    texts = [document_text(t, x) for t, x in zip(table["title"].to_pylist(), table["text"].to_pylist())]
    return windowed.encode(texts), table["doc_id"].to_pylist()


def assert_identical(a: sp.csr_matrix, b: sp.csr_matrix):
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_plan_reads_ranges_and_fingerprints_rows_not_layout(corpus_file, tmp_path):
    specs = plan_shards(corpus_file, SHARD)
    assert [(s.start, s.stop) for s in specs] == [(0, 100), (100, 200), (200, 300), (300, 325)]
    assert ShardSpec.from_dict(json.loads(json.dumps(specs[1].to_dict()))) == specs[1]
    relaid = tmp_path / "one_group.parquet"
    pq.write_table(pq.read_table(corpus_file), relaid, row_group_size=10_000)
    assert [s.fingerprint for s in plan_shards(relaid, SHARD)] == [s.fingerprint for s in specs]
    assert read_shard(specs[2])["doc_id"].to_pylist() == pq.read_table(corpus_file)["doc_id"].to_pylist()[200:300]
    with pytest.raises(ConfigError, match="shard_size"):
        plan_shards(corpus_file, 0)


@pytest.mark.slow
def test_sharded_encode_equals_one_call(corpus_file, windowed, whole, tmp_path):
    specs = plan_shards(corpus_file, SHARD)
    matrix, ids = load_vector_files(encode_shards(specs, windowed, tmp_path))
    assert ids == whole[1]
    assert_identical(matrix, whole[0])
    with pytest.raises(ConfigError, match="sort_window"):  # boundaries off the encoder's windows
        encode_shard(plan_shards(corpus_file, 30)[1], windowed, tmp_path / "x.npz")


@pytest.mark.slow
def test_killed_run_resumes_at_next_shard_and_ends_identical(corpus_file, windowed, whole, tmp_path):
    # A real process, killed (SIGKILL) right after its second shard is sealed.
    script = textwrap.dedent(f"""
        import os, signal
        from disco_core.encoder import SpladeEncoder
        from disco_core.shards import plan_shards, encode_shards
        done = []
        def on_shard(spec, info):
            done.append(spec.name)
            if len(done) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        encoder = SpladeEncoder("splade-tiny", max_length=128, batch_size=8, token_budget=512, sort_window={WINDOW})
        encode_shards(plan_shards({str(corpus_file)!r}, {SHARD}), encoder, {str(tmp_path)!r}, on_shard=on_shard)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=600)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    specs = plan_shards(corpus_file, SHARD)
    assert [shard_done(s, vector_path(tmp_path, s)) for s in specs] == [True, True, False, False]

    encoded = []
    paths = encode_shards(specs, windowed, tmp_path, on_shard=lambda spec, info: encoded.append(info is not None))
    assert encoded == [False, False, True, True]  # resumed at the third shard
    matrix, ids = load_vector_files(paths)
    assert ids == whole[1]
    assert_identical(matrix, whole[0])

    # A changed passage: only its shard gets a new fingerprint and is encoded again.
    table = pq.read_table(corpus_file).to_pydict()
    table["text"][150] = table["text"][150] + " (edited)"
    edited = tmp_path / "edited.parquet"
    pq.write_table(schemas.to_table("corpus", table), edited, row_group_size=37)
    new_specs = plan_shards(edited, SHARD)
    assert [a.fingerprint == b.fingerprint for a, b in zip(specs, new_specs)] == [True, False, True, True]
    moved = [ShardSpec(**{**s.to_dict(), "corpus": str(edited)}) for s in specs]  # same rows, new file
    assert all(shard_done(s, vector_path(tmp_path, s)) for i, s in enumerate(moved) if i != 1)
    encoded.clear()
    encode_shards(new_specs, windowed, tmp_path, on_shard=lambda spec, info: encoded.append(info is not None))
    assert encoded == [False, True, False, False]
