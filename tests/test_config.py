import pytest

from disco_core.config import Config, load_config
from disco_core.errors import ConfigError


def test_defaults_are_the_method_defaults():
    cfg = Config()
    assert cfg.dataset.name == "embedded"
    assert cfg.encoder.model == "splade-tiny"
    assert cfg.retrieval.k == 1000
    assert cfg.evaluation.metrics == ["mrr@10", "ndcg@3", "recall@10", "recall@100"]
    assert cfg.conversation.answers == "last"


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
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(tmp_path / "bad.yaml")
