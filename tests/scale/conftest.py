"""Replica tests: real `pdg serve` processes on one PostgreSQL database of their own.

Their point is PostgreSQL, so they always use it (127.0.0.1:5432, user postgres, or PDG_TEST_PG_URL),
whatever PDG_TEST_DB says. `make test` runs the suite twice; these run once, in the PostgreSQL half:
the SQLite half (PDG_TEST_DB=sqlite, set explicitly) does not collect them. A plain `pytest tests/scale`
runs them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gmcrypto.keys import Keyring
from tests.scale.cluster import Cluster, fresh_database

collect_ignore_glob = ["test_*.py"] if os.environ.get("PDG_TEST_DB") == "sqlite" else []


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """An empty database, a shared data and keys directory; replicas are started by the test.

    The keys directory is created beforehand, as an operator creates the Secret; the finalizer always
    ends every process this fixture's cluster started.
    """
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="pdg-scale-") as root:
        c = Cluster(Path(root), url, extra_env={"PDG_CHECKPOINT_INTERVAL_SECONDS": "5"})
        Keyring.load_or_create(c.keys_dir)
        try:
            yield c
        finally:
            for who, log in c.casualties().items():  # shown with a failure: why a replica went away
                print(f"--- replica {who} exited on its own; its log ends:\n{log}")
            c.stop()
