"""The ``disco`` command line: a user's mistake is one line naming it, exit code 2, no traceback,
and what was finished before stays as it was."""

from __future__ import annotations

import json
import shutil

import pytest

from flows.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    """The stderr of a refused command: no traceback, exactly one line that says what is wrong."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert errors[0].startswith("disco: error: "), err
    return errors[0]


@pytest.mark.parametrize("argv, names", [
    (["run", "--set", "train.epochs=true"], "train.epochs"),
    (["run", "--set", "retrieval.k=true"], "retrieval.k"),
    (["run", "--set", "evaluation.metrics=[bogus@10]"], "bogus@10"),
    (["run", "--set", "retrieval.k=[1"], "not valid YAML"),
    (["run", "--set", "nosuch.key=1"], "nosuch"),
    (["run", "--set", "novalue"], "section.key=value"),
    (["run", "--set", "evaluation.split=later"], "unknown split 'later'"),
    (["run", "--set", "evaluation.variants=[last_turn, nonsense]"], "unknown query variant 'nonsense'"),
    (["run", "--set", "evaluation.variants=[student:nobody]"], "no student 'nobody'"),
    (["run", "--set", "evaluation.variants=[last_turn, student]"], "overlaps the training split"),
    (["run", "--set", "dataset.name=nowhere"], "unknown dataset 'nowhere'"),
    (["run", "--set", "dataset.domains=[nope]", "--set", "dataset.name=mtrag"], "nope"),
    (["run", "--set", 'dataset.domains=["../../x"]'], "../../x"),
    (["run", "--set", "teachers=[{name: a/b, backend: dataset}]"], "a/b"),
    (["run", "--set", "teachers=[{backend: dataset}, {name: human, backend: file, path: x.tsv}]"], "unique"),
    (["run", "nope"], "no stage or instance 'nope'"),
    (["run", "--force", "typo"], "no stage or instance 'typo'"),
    (["run", "-c", "missing.yaml"], "missing.yaml: config file not found"),
    (["sweep", "-c", "missing.yaml"], "missing.yaml: config file not found"),
])
def test_configuration_mistakes_are_one_line_and_exit_2(capsys, argv, names, tmp_path):
    code, out, err = run_cli(capsys, *argv[:1], *argv[1:], "--set", f"work_dir={tmp_path}") \
        if argv[0] == "run" and "-c" not in argv else run_cli(capsys, *argv)
    assert code == 2
    assert names in one_error_line(err)


def test_bad_yaml_file_names_its_line(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset:\n  name: embedded\nretrieval: [k\n")
    code, _, err = run_cli(capsys, "run", "-c", str(config))
    assert code == 2 and f"{config}:4: invalid YAML" in one_error_line(err)


def test_debug_shows_the_traceback(capsys):
    from disco_core.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "run", "--set", "train.epochs=true"])


@pytest.fixture
def source(tmp_path):
    from disco_core.datasets import get

    folder = tmp_path / "src"
    shutil.copytree(get("embedded").default_path(), folder)
    return folder


BAD_DATA = [
    ("conversations.jsonl", lambda t: t.replace('"turns"', '"turnz"', 1), "conversations.jsonl:1"),
    ("conversations.jsonl", lambda t: t.encode("utf-16"), "conversations.jsonl"),
    ("corpus.jsonl", lambda t: "\n", "corpus.jsonl"),
    ("qrels.tsv", lambda t: "bridges-c1_1\tbridges-001\thigh\n", "qrels.tsv:1"),
    ("corpus.jsonl", lambda t: t.replace('"doc_id": "bridges-001"', '"doc_id": "bridges 001"', 1), "corpus.jsonl:1"),
]


@pytest.mark.slow
def test_bad_data_is_one_line_naming_file_and_line_and_keeps_finished_work(capsys, source, tmp_path, prefect_harness):
    """Through the pipeline (a Prefect flow), each bad file ends in one line and exit 2; the ingest
    finished before is left exactly as it was."""
    common = ["--set", f"work_dir={tmp_path / 'work'}", "--set", "dataset.name=local", "--set", f"dataset.path={source}"]
    assert run_cli(capsys, "run", "ingest", *common)[0] == 0
    corpus = next((tmp_path / "work" / "local" / "ingest").glob("*/corpus.parquet"))
    before = corpus.read_bytes()
    for name, corrupt, where in BAD_DATA:
        original = (source / name).read_bytes() if (source / name).exists() else None
        damaged = corrupt(original.decode() if original else "")
        (source / name).write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        try:
            code, _, err = run_cli(capsys, "run", "ingest", *common)
        finally:
            if original is None:
                (source / name).unlink()
            else:
                (source / name).write_bytes(original)
        assert code == 2, (name, err)
        assert where in one_error_line(err), (name, err)
        assert corpus.read_bytes() == before


def test_stages_and_datasets_are_listed(capsys):
    code, out, _ = run_cli(capsys, "stages")
    assert code == 0 and out.splitlines()[0].startswith("download") and "report" in out
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0 and "mtrag" in out


def test_config_prints_the_resolved_configuration(capsys):
    code, out, _ = run_cli(capsys, "config", "--set", "retrieval.k=10")
    assert code == 0 and json.loads(out)["retrieval"]["k"] == 10
