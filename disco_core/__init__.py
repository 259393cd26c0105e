"""disco_core: the plain library behind disco (no Prefect import; usable from a notebook).

Modules, one owner per thing:
- ``env``: environment defaults and the project's paths (imported first);
- ``schemas``: the Parquet tables (columns and types) and their atomic reading/writing;
- ``config``: the run configuration as one typed object;
- ``datasets``: the registry of datasets and their loaders into canonical tables;
- ``conversation``: the student's input formatter;
- ``encoder``: SPLADE encoding of texts into sparse vocabulary vectors;
- ``index``: the exact inverted index and top-k retrieval;
- ``runs``: run tables and TREC run files;
- ``evaluation``: ranx metrics, comparisons and significance;
- ``packaging`` and ``model_card``: the student as a sentence-transformers folder with its card, and
  its upload to the hub;
- ``paper_files``: the DiSCo authors' teacher runs and rewrites in and out; ``trec``: TREC qrels;
- ``progress``: bars, log lines and subscriber events for long loops;
- ``tracking``: optional MLflow tracking; ``latex``: paper tables;
- ``student_init`` and ``warm_up``: a larger student (any BERT body in the document encoder's
  vocabulary) given a tied MLM head and warmed up on the document encoder's query vectors.
"""

from . import env  # noqa: F401  (environment defaults before torch, numba, ir_datasets)

__version__ = "0.1.0"
