"""Datasets by name (see :mod:`disco_core.datasets.registry`): the registry and its built-in entries.

Each dataset module registers its entries when imported here. The registry code lives in its own
module so that adding a dataset changes no code the other datasets' cache keys depend on; the row
helpers and field checks every loader shares live in :mod:`disco_core.datasets._rows`.
"""

from ._rows import KeyedRows  # noqa: F401
from .registry import (TABLES, DatasetSpec, DatasetTables, REGISTRY, check_domain_names, data_dir,  # noqa: F401
                       domains, download, get, load, register, source_files, source_path, validation_report)

from . import embedded, mtrag  # noqa: E402,F401  (register the built-in datasets)
from . import topiocqa, qrecc  # noqa: E402,F401
from . import cast, ikat  # noqa: E402,F401
