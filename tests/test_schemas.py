import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from disco_core import schemas
from disco_core.errors import DataError


def corpus_rows():
    return [{"doc_id": "d1", "title": "T", "text": "x", "domain": None},
            {"doc_id": "d2", "title": "", "text": "y", "domain": "a"}]


def test_every_table_has_a_schema_and_a_key():
    assert set(schemas.SCHEMAS) == {"corpus", "turns", "qrels", "rewrites", "queries", "run", "per_query",
                                     "teacher_scores", "targets"}
    for name, sch in schemas.SCHEMAS.items():
        assert all(k in sch.names for k in schemas.KEYS[name])
    assert schemas.TURNS.field("history").type == pa.list_(schemas.MESSAGE)
    assert schemas.QRELS.field("relevance").type == pa.int32()
    assert schemas.REWRITES.names == ["query_id", "teacher", "text", "model", "prompt_hash", "status"]


def test_roundtrip_keeps_types(tmp_path):
    turns = schemas.to_table("turns", [{"query_id": "c_2", "conversation_id": "c", "turn": 2, "utterance": "why?",
                                        "history": [{"speaker": "user", "text": "a"}, {"speaker": "agent", "text": "b"}],
                                        "domain": None}])
    path = schemas.write_table("turns", turns, tmp_path / "turns.parquet")
    back = schemas.read_table("turns", path)
    assert back.schema.equals(schemas.TURNS, check_metadata=False)
    assert back.to_pylist()[0]["history"][1] == {"speaker": "agent", "text": "b"}


def test_validate_rejects_duplicates_nulls_and_missing_columns(tmp_path):
    dup = schemas.to_table("corpus", corpus_rows() + [corpus_rows()[0]])
    with pytest.raises(DataError, match="duplicate key"):
        schemas.validate("corpus", dup, source="corpus.parquet")
    nulls = pa.table({"doc_id": ["d1"], "title": pa.array([None], pa.string()), "text": ["x"],
                      "domain": pa.array([None], pa.string())})
    with pytest.raises(DataError, match="nulls in non-nullable column 'title'"):
        schemas.validate("corpus", nulls)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['text'\]"):
        schemas.validate("corpus", pa.table({"doc_id": ["d"], "title": ["t"], "domain": ["x"]}))


def test_failed_write_leaves_previous_file_intact(tmp_path):
    path = schemas.write_table("corpus", schemas.to_table("corpus", corpus_rows()), tmp_path / "corpus.parquet")
    before = path.read_bytes()
    bad = schemas.to_table("corpus", corpus_rows() * 2)  # duplicate keys: refused before writing
    with pytest.raises(DataError):
        schemas.write_table("corpus", bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.parquet"]  # no temporary left behind
    assert pq.read_table(path).num_rows == 2


def test_streamed_write_refuses_a_key_repeated_across_chunks(tmp_path, monkeypatch):
    def chunk(*ids):
        return schemas.to_table("corpus", [{"doc_id": i, "title": "", "text": "x", "domain": None} for i in ids])

    path = tmp_path / "corpus.parquet"
    assert schemas.write_table_chunks("corpus", iter([chunk("a", "b"), chunk("c")]), path) == 3
    before = path.read_bytes()
    with pytest.raises(DataError, match="duplicate key {'doc_id': 'b'}"):
        schemas.write_table_chunks("corpus", iter([chunk("a", "b"), chunk("c", "b")]), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["corpus.parquet"]
    # keys are compared as hashes first: a hash collision between different keys is not a duplicate
    monkeypatch.setattr(schemas, "_key_hashes", lambda keys: __import__("numpy").zeros(keys.num_rows, "int64"))
    assert schemas.write_table_chunks("corpus", iter([chunk("a", "b"), chunk("c")]), path) == 3
    with pytest.raises(DataError, match="duplicate key {'doc_id': 'a'}"):
        schemas.write_table_chunks("corpus", iter([chunk("a", "b"), chunk("a")]), path)
    qrels = [{"query_id": "q", "doc_id": "d", "relevance": 1}]
    with pytest.raises(DataError, match="duplicate key"):
        schemas.write_table_chunks("qrels", iter([schemas.to_table("qrels", qrels)] * 2), tmp_path / "q.parquet")
