import pytest

from disco_core.config import Config
from disco_core.config_files import load_config
from disco_core.errors import ConfigError


def test_defaults_are_the_method_defaults():
    cfg = Config()
    assert cfg.dataset.name == "embedded"
    assert cfg.encoder.model == "splade-tiny"
    assert cfg.retrieval.k == 1000
    assert cfg.evaluation.metrics == ["mrr@10", "ndcg@3", "recall@10", "recall@100"]
    assert cfg.conversation.answers == "none"


def test_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset:\n  name: mtrag\nretrieval:\n  k: 500\n")
    cfg = load_config(path, ["retrieval.k=100", "dataset.domains=[govt, fiqa]", "work_dir=/tmp/x"])
    assert (cfg.dataset.name, cfg.retrieval.k, cfg.dataset.domains, cfg.work_dir) == ("mtrag", 100, ["govt", "fiqa"], "/tmp/x")


@pytest.mark.parametrize("override, message", [
    ("retrieval.kk=3", "retrieval.kk"),
    ("retrieval.k=many", "retrieval.k"),
    ("conversation.answers=some", "conversation.answers"),
    ("novalue", "section.key=value"),
    ("train.epochs=true", "train.epochs: Input should be a valid integer, got True"),
    ("retrieval.k=true", "retrieval.k"),
    ("evaluation.metrics=[bogus@10]", "unknown metric 'bogus@10'"),
    ("evaluation.metrics=[mrr@x]", "unknown metric 'mrr@x'"),
    ("evaluation.split=half", "unknown split 'half'"),
    ("report.split=domain:,", "names no domain"),
    ("teachers=[{name: .., backend: dataset}]", "teacher name '..'"),
    ("teachers=[{name: a/b, backend: dataset}]", "teacher name 'a/b'"),
    ('dataset.domains=["../../x"]', "domain '../../x'"),
    ("train.name=../x", "student name"),
    ("train.negative_ranks=[20, 10]", "negative_ranks"),
    ("evaluation.fusions=[{name: f, method: magic, variants: [a, b]}]", "unknown fusion method 'magic'"),
    ("evaluation.fusions=[{name: f, variants: [a]}]", "at least 2"),
    ("retrieval.k=[1", "not valid YAML"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: invalid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_ranx_metric_names_are_ranx_own():
    """The metric names checked at load are the ones ranx evaluates (kept in step with ranx)."""
    import ranx.metrics

    from disco_core.config import RANX_METRICS

    for name in RANX_METRICS:
        ranx.metrics.metric_switch(name)  # raises for a name ranx does not know
    with pytest.raises(ValueError):
        ranx.metrics.metric_switch("bogus")


def test_performance_only_fields_are_marked_once():
    """The fields that change speed, never outputs: no cache key holds them (tasks.stage.plain)."""
    from disco_core.config import is_perf
    from tasks.stage import plain

    cfg = Config()
    marked = {f"{section}.{name}" for section in ("encoder", "index", "train", "run", "dataset")
              for name in type(getattr(cfg, section)).model_fields if is_perf(type(getattr(cfg, section)), name)}
    assert marked == {"encoder.batch_size", "encoder.token_budget", "encoder.device", "encoder.threads", "encoder.shard_size",
                      "index.query_batch_size", "index.threads", "train.log_every", "run.workers",
                      "run.dask_address", "run.lock_timeout", "dataset.cache_dir", "dataset.mirror"}
    keyed = plain(cfg)
    assert "log_every" not in keyed["train"] and "batch_size" not in keyed["encoder"] and "run" in keyed
    assert keyed["run"] == {} and "work_dir" not in keyed
