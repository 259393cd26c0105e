"""A sharded index returns exactly what one index over everything returns (documents, scores, tie
order), in process and on a two-worker Dask cluster; the streamed build equals the in-memory one."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from disco_core import datasets, schemas
from disco_core.index import InvertedIndex
from disco_core.sharded_index import ShardedIndex
from disco_core.vectors import save_vectors

VOCAB = 120
COPIES = (4, 5, 6, 63, 64, 700, 701, 1999)  # document 4 and its copies


def tied_collection(seed=0):
    """Few distinct weights (many equal scores), duplicate documents in different shards and on
    both sides of shard and block boundaries, an empty document."""
    docs = sp.random(2000, VOCAB, density=0.06, format="csr", dtype=np.float32, random_state=seed)
    docs.data = np.ceil(docs.data * 3)
    docs = docs.tolil()
    for copy in COPIES[1:]:
        docs[copy] = docs[4]
    docs[300] = 0
    queries = sp.random(48, VOCAB, density=0.15, format="csr", dtype=np.float32, random_state=seed + 1)
    queries.data = np.ceil(queries.data * 2)
    queries = queries.tolil()
    queries[0] = docs[4]  # its best documents are the seven copies of document 4, all tied
    docs, queries = sp.csr_matrix(docs), sp.csr_matrix(queries)
    docs.eliminate_zeros()
    return docs, queries


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def brute_force(queries, docs, k):
    scores = (queries.astype(np.float64) @ docs.T.astype(np.float64)).toarray()
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        out.append(order[row[order] > 0][:k])
    return out


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    docs, queries = tied_collection()
    ids = [f"d{i}" for i in range(docs.shape[0])]
    folder = tmp_path_factory.mktemp("sharded")
    cuts = [0, 5, 64, 65, 700, 1500, 2000]  # uneven, one-document and block-straddling shards
    files = [save_vectors(folder / f"vectors-{i}.npz", docs[a:b], ids[a:b]) for i, (a, b) in
             enumerate(zip(cuts[:-1], cuts[1:]))]
    index = ShardedIndex.build(folder / "index", files, block_docs=16)
    return docs, queries, ids, InvertedIndex.build(docs, ids, block_docs=16), index


@pytest.mark.parametrize("k", [1, 7, 100, 5000])
@pytest.mark.parametrize("n_queries", [1, 3, 48])  # one lane, sixteen lanes, several groups
def test_sharded_equals_single_index_ties_included(sharded, k, n_queries):
    docs, queries, _, single, index = sharded
    queries = queries[:n_queries]
    expected = single.search_positions(queries, k)
    assert_same(ShardedIndex.load(index.folder).search_positions(queries, k), expected)
    for q, want in enumerate(brute_force(queries, docs, k)):  # and the single index is the truth
        np.testing.assert_array_equal(expected[0][q, : len(want)], want)
        assert (expected[0][q, len(want):] == -1).all()
    copies = [p for p in expected[0][0] if p in COPIES]  # equal vectors: equal scores, position order
    assert copies == sorted(copies) and (len(copies) == len(COPIES) or k < 1000)


def test_threads_and_batches_do_not_change_results(sharded):
    _, queries, _, single, index = sharded
    expected = single.search_positions(queries, 50, threads=1)
    assert_same(single.search_positions(queries, 50, threads=2, batch_size=5), expected)
    assert_same(index.search_positions(queries, 50, threads=2, batch_size=17), expected)


def test_search_ids_and_rebuild_keeps_built_shards(sharded, tmp_path):
    docs, queries, ids, single, index = sharded
    qids = [f"q{i}" for i in range(queries.shape[0])]
    assert index.search_ids(queries, qids, 20) == single.search_ids(queries, qids, 20)
    before = [(f / "docs.npy").stat().st_mtime_ns for f in index.shard_folders()]
    files = [f"{index.folder.parent}/vectors-{i}.npz" for i in range(index.n_shards)]
    again = ShardedIndex.build(index.folder, files, block_docs=16)
    assert [(f / "docs.npy").stat().st_mtime_ns for f in again.shard_folders()] == before


def test_streamed_write_equals_in_memory_build_both_weight_kinds(tmp_path):
    docs, queries = tied_collection(3)  # a few distinct weights: stored as codes
    wide = sp.random(3000, 40, density=0.9, format="csr", dtype=np.float32, random_state=4)  # 108,000 distinct
    for matrix, kind in ((docs, "uint16 codes"), (wide, "float32")):
        ids = [str(i) for i in range(matrix.shape[0])]
        q = queries[:, : matrix.shape[1]]
        built = InvertedIndex.build(matrix, ids, block_docs=32)
        chunks = lambda: ((matrix[i : i + 333], ids[i : i + 333]) for i in range(0, matrix.shape[0], 333))  # noqa: E731
        written = InvertedIndex.write(tmp_path / kind / str(matrix.shape), chunks, matrix.shape[1], block_docs=32)
        assert built.layout() == written.layout() and written.layout()["weights"] == kind
        assert isinstance(written.docs, np.memmap)
        assert_same(built.search_positions(q, 30), written.search_positions(q, 30))
        for row, want in enumerate(brute_force(q, matrix, 30)):
            np.testing.assert_array_equal(written.search_positions(q, 30)[0][row, : len(want)], want)


@pytest.mark.slow
def test_two_worker_dask_cluster_encodes_and_searches_embedded(encoder, tmp_path):
    distributed = pytest.importorskip("distributed")
    from disco_core.dask_search import DaskShardSearcher
    from disco_core.encoder import SpladeEncoder
    from disco_core.shards import encode_shard_with, encoder_settings, plan_shards, vector_path
    from disco_core.vectors import load_vector_files

    corpus = tmp_path / "corpus.parquet"
    pq.write_table(schemas.validate("corpus", datasets.load("embedded").corpus), corpus, row_group_size=50)
    specs = plan_shards(corpus, 100)
    settings = {"model": "splade-tiny", "max_length": 128, "batch_size": 8, "token_budget": 512, "device": "cpu",
                "sort_window": 50}
    local = SpladeEncoder("splade-tiny", max_length=128, batch_size=8, token_budget=512, model_obj=encoder.model,
                          tokenizer=encoder.tokenizer, sort_window=50)
    texts = [t for t in datasets.load("embedded").corpus["text"].to_pylist()][:3]
    queries = local.encode(texts + ["which passage talks about a conversational search"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        # encoding: one task per shard, each worker keeping its encoder loaded
        infos = client.gather(client.map(encode_shard_with, specs, [vector_path(tmp_path / "vectors", s) for s in specs],
                                         encoder=settings, pure=False))
        assert [i["encoder"] for i in infos] == [encoder_settings(local)] * len(specs)
        files = [vector_path(tmp_path / "vectors", s) for s in specs]
        matrix, ids = load_vector_files(files)
        single = InvertedIndex.build(matrix, ids)
        index = ShardedIndex.build(tmp_path / "index", files)
        searcher = DaskShardSearcher(index, client)
        assert len(searcher.assignment) == 2  # each worker holds some shards
        for k in (10, 1000):
            assert_same(searcher.search_positions(queries, k), single.search_positions(queries, k))
        qids = [f"q{i}" for i in range(queries.shape[0])]
        assert searcher.search_ids(queries, qids, 10) == single.search_ids(queries, qids, 10)
    # and the workers' vectors are the ones this process computes
    whole = local.encode([t for t in _texts(corpus)])
    np.testing.assert_array_equal(matrix.data, whole.data)
    np.testing.assert_array_equal(matrix.indices, whole.indices)


def _texts(corpus):
    from disco_core.encoder import document_text

    table = pq.read_table(corpus)
    return [document_text(t, x) for t, x in zip(table["title"].to_pylist(), table["text"].to_pylist())]
