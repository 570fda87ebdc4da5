"""Warm tables in the worker: one grant's cached data is never served under another grant, a forgotten
(revoked) grant is dropped and not cached again, a new version is never served stale, and a job still
sees only the columns it asked for."""

from __future__ import annotations

import pyarrow as pa
import pytest

from common.errors import Invalid
from sandbox.runner import Cached, CacheKey, Limits, ParquetBytes, SandboxRunner
from sandbox.table_cache import TableCache
from tests.sandbox.conftest import certificates_table, parquet_bytes

COUNT = "select count(*) as n from population"


class Loader:
    """A table source that counts how often the runner had to load (decrypt) it."""

    def __init__(self, table: pa.Table) -> None:
        self.data, self.calls = parquet_bytes(table), 0

    def __call__(self, columns: list[str] | None = None) -> ParquetBytes:
        self.calls += 1
        self.columns = columns
        return ParquetBytes(self.data)


def _key(grant: int, version: int = 1, digest: str = "d1") -> CacheKey:
    return CacheKey(grant, "510100-RK-0001", version, digest)


@pytest.fixture
def warm_runner():
    with SandboxRunner(Limits(timeout_s=5.0, memory_mb=256, threads=1), cache_mb=64) as r:
        r.warm_up()
        yield r


def _count(runner, key, loader, cols=("gender", "id_number")) -> int:
    res = runner.run(COUNT, {"population": Cached(key, loader)}, columns={"population": set(cols)})
    return res.rows[0]["n"]


def test_repeat_query_is_served_warm_without_loading_again(warm_runner, population) -> None:
    load = Loader(population)
    assert [_count(warm_runner, _key(1), load) for _ in range(3)] == [110, 110, 110]
    assert load.calls == 1
    assert warm_runner.cached_keys() == {_key(1).astuple()}


def test_one_grants_cache_is_never_served_to_another_grant(warm_runner, population) -> None:
    a, b = Loader(population), Loader(population.slice(0, 7))
    # Same dataset, version and digest: only the grant differs, and B still gets its own load.
    assert _count(warm_runner, _key(1), a) == 110
    assert _count(warm_runner, _key(2), b) == 7
    assert _count(warm_runner, _key(1), a) == 110 and _count(warm_runner, _key(2), b) == 7
    assert (a.calls, b.calls) == (1, 1)
    assert warm_runner.cached_grants() == {1, 2}


def test_forgotten_grant_is_dropped_and_never_cached_again(warm_runner, population) -> None:
    load = Loader(population)
    _count(warm_runner, _key(1), load)
    _count(warm_runner, _key(2), Loader(population))
    warm_runner.forget_grants({1})
    assert warm_runner.cached_grants() == {2}
    assert _count(warm_runner, _key(1), load) == 110  # (the service refuses it first; the runner alone does not)
    assert load.calls == 2 and warm_runner.cached_grants() == {2}


def test_new_version_is_loaded_and_the_old_one_dropped(warm_runner, population) -> None:
    v1, v2 = Loader(population), Loader(population.slice(0, 50))
    assert _count(warm_runner, _key(1, 1, "d1"), v1) == 110
    assert _count(warm_runner, _key(1, 2, "d2"), v2) == 50
    assert v2.calls == 1 and warm_runner.cached_keys() == {_key(1, 2, "d2").astuple()}
    # A republished file with another digest under the same number is another key too.
    assert _count(warm_runner, _key(1, 2, "d3"), Loader(population.slice(0, 9))) == 9


def test_a_job_sees_only_its_columns_though_the_entry_holds_more(warm_runner, population) -> None:
    load = Loader(population)
    _count(warm_runner, _key(1), load, cols=("person_name", "id_number"))
    _count(warm_runner, _key(1), load, cols=("gender", "id_number"))  # adds gender to the entry
    assert load.calls == 2
    with pytest.raises(Invalid, match="Binder"):
        warm_runner.run(
            "select count(person_name) as n from population",
            {"population": Cached(_key(1), load)},
            columns={"population": {"gender", "id_number"}},
        )
    assert load.calls == 2  # served warm, projected to the two columns asked for


def test_cache_off_loads_every_time(population) -> None:
    load = Loader(population)
    with SandboxRunner(Limits(timeout_s=5.0, threads=1), cache_mb=0) as r:
        assert [_count(r, _key(1), load) for _ in range(2)] == [110, 110]
    assert load.calls == 2


def test_worker_cache_evicts_least_recently_used_within_budget(population) -> None:
    t = population.select(["id_number", "gender"])
    cache = TableCache(budget_bytes=int(t.nbytes * 2.5))
    for grant in (1, 2, 3):
        cache.put((grant, "ds", 1, "d"), t)
        if grant == 2:
            assert cache.get((1, "ds", 1, "d"), ["gender"]) is not None  # grant 1 used again
    assert [k[0] for k, _ in cache.listing()] == [1, 3]
    assert cache.nbytes <= cache.budget_bytes
    cache.put((9, "ds", 1, "d"), pa.concat_tables([t] * 3))  # larger than the whole budget: not kept
    assert [k[0] for k, _ in cache.listing()] == [1, 3]


def test_each_job_gets_a_fresh_database_that_holds_none_of_the_last_jobs_tables(warm_runner, population) -> None:
    _count(warm_runner, _key(1), Loader(population))
    with pytest.raises(Invalid, match="Catalog"):
        warm_runner.run(COUNT, {})  # the database opened between jobs is empty, whatever the worker holds
    assert warm_runner.run("select current_setting('threads') as t", {}).rows == [{"t": 1}]


def test_preload_warms_a_grant_and_never_a_forgotten_one(warm_runner, population) -> None:
    load = Loader(population)
    cols = {"population": {"gender", "id_number"}}
    assert warm_runner.preload({"population": Cached(_key(1), load)}, cols)
    assert load.calls == 1 and sorted(load.columns) == ["gender", "id_number"]
    assert _count(warm_runner, _key(1), load) == 110
    assert load.calls == 1  # the first query was served warm
    warm_runner.forget_grants({2})
    other = Loader(population)
    assert not warm_runner.preload({"population": Cached(_key(2), other)}, cols)
    assert other.calls == 0 and warm_runner.cached_grants() == {1}


JOIN = (
    "select p.gender, count(*) as n from population p join certificates c on c.holder_id = p.id_number "
    "group by p.gender order by p.gender"
)
JOIN_COLUMNS = {"population": {"gender", "id_number"}, "certificates": {"holder_id"}}


def test_two_cold_tables_are_decoded_and_decrypted_side_by_side_and_then_warm(warm_runner, population) -> None:
    """The first cold table goes to the worker as soon as it is loaded; the answer and the cache are as if
    both had gone together."""
    pop, certs = Loader(population), Loader(certificates_table(population))
    plain = {"population": ParquetBytes(pop.data), "certificates": ParquetBytes(certs.data)}
    expected = warm_runner.run(JOIN, plain, columns=JOIN_COLUMNS).rows
    tables = {"population": Cached(_key(1), pop), "certificates": Cached(CacheKey(1, "certs", 1, "c1"), certs)}
    assert warm_runner.run(JOIN, tables, columns=JOIN_COLUMNS).rows == expected
    assert warm_runner.run(JOIN, tables, columns=JOIN_COLUMNS).rows == expected
    assert (pop.calls, certs.calls) == (1, 1)


def test_a_table_failing_to_load_after_one_was_sent_ahead_leaves_no_stale_reply(warm_runner, population) -> None:
    pop = Loader(population)

    def broken(_columns):
        raise Invalid("version 1 failed its integrity check")

    tables = {"population": Cached(_key(1), pop), "certificates": Cached(CacheKey(1, "certs", 1, "c1"), broken)}
    with pytest.raises(Invalid, match="integrity"):
        warm_runner.run(JOIN, tables, columns=JOIN_COLUMNS)
    assert pop.calls == 1  # it was loaded and sent ahead before the second failed
    for _ in range(3):  # the pool answers each query with its own reply
        assert _count(warm_runner, _key(2), Loader(population)) == 110
