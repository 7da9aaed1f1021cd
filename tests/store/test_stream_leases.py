"""Stream leases: a tenant's open SSE streams, counted across instances in the runs table.

On moto and DynamoDB Local (the `store` fixture), and on DynamoDB Local under the fault
injector (the lease put and delete are new write paths: a conflict or a throttle must
neither lose a slot nor let one more stream in)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from workflow_runs import keys
from workflow_runs.store import RunStore

from tests.store.test_store_under_faults import until_done

TTL = 900


class Clock:
    def __init__(self, now: float = 1_800_000_000):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_tenant_gets_exactly_its_limit_then_none(store: RunStore):
    leases = [store.acquire_stream_lease("t1", 3, TTL) for _ in range(3)]

    assert all(lease is not None for lease in leases)
    assert sorted(lease.slot for lease in leases if lease) == [0, 1, 2]
    assert [lease.open_streams for lease in leases if lease] == [1, 2, 3]
    assert store.acquire_stream_lease("t1", 3, TTL) is None
    assert store.open_streams("t1") == 3
    # another tenant's slots are its own
    assert store.acquire_stream_lease("t2", 3, TTL) is not None


def test_a_released_slot_can_be_taken_again(store: RunStore):
    first = store.acquire_stream_lease("t1", 1, TTL)
    assert first is not None and store.acquire_stream_lease("t1", 1, TTL) is None

    store.release_stream_lease(first)

    assert store.open_streams("t1") == 0
    assert store.acquire_stream_lease("t1", 1, TTL) is not None


def test_an_expired_lease_frees_its_slot_and_its_late_release_does_not_free_the_new_one(store: RunStore):
    # Given a stream whose instance crashed (it never gives its lease back)
    clock = Clock()
    store.clock = clock
    crashed = store.acquire_stream_lease("t1", 1, TTL)
    assert crashed is not None
    clock.now += TTL - 1
    assert store.acquire_stream_lease("t1", 1, TTL) is None

    # When its lease expires, another stream takes the slot
    clock.now += 1
    taker = store.acquire_stream_lease("t1", 1, TTL)
    assert taker is not None and taker.slot == crashed.slot

    # Then a late release of the old lease leaves the new holder's slot alone
    store.release_stream_lease(crashed)
    assert store.open_streams("t1") == 1
    assert store.acquire_stream_lease("t1", 1, TTL) is None


def test_lease_items_carry_the_ttl_attribute_and_no_index_keys(store: RunStore):
    clock = Clock()
    store.clock = clock
    lease = store.acquire_stream_lease("t1", 5, TTL)
    assert lease is not None

    item = store.client.get_item(TableName=store.runs_table, ConsistentRead=True, Key={
        keys.PK: {"S": keys.stream_leases_pk("t1")}, keys.SK: {"S": keys.stream_lease_sk(lease.slot)}})["Item"]

    assert int(item[keys.TTL_ATTRIBUTE]["N"]) == int(clock.now) + TTL
    assert not {index.partition for index in keys.INDEXES} & set(item)


@pytest.mark.dynamodb_local
def test_concurrent_openers_never_exceed_the_limit(local_store: RunStore):
    # Given 40 openers at once for 10 slots (they race on the same free slots)
    start = threading.Barrier(40)

    def open_one(_: int):
        start.wait()
        return local_store.acquire_stream_lease("busy", 10, TTL)

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(open_one, range(40)))

    granted = [lease for lease in results if lease is not None]
    assert len(granted) == 10
    assert sorted(lease.slot for lease in granted) == list(range(10))
    assert local_store.open_streams("busy") == 10


@pytest.mark.dynamodb_local
def test_leases_under_conflicts_and_throttles_keep_the_cap_exact_and_lose_no_slot(faulty):
    store, faults = faulty
    limit = 6
    start = threading.Barrier(16)

    def open_one(_: int):
        start.wait()
        return until_done(lambda: store.acquire_stream_lease("faulty", limit, TTL))

    # When 16 streams open at once on a busy table
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(open_one, range(16)))
    granted = [lease for lease in results if lease is not None]

    # Then exactly the limit got in, each on its own slot
    assert len(granted) == limit
    assert len({lease.slot for lease in granted}) == limit
    assert faults.stats["injected"] > 0
    # Throttles met the lease writes. TransactionConflict cannot: no transaction touches a
    # lease item, and two openers of one slot race on its condition (ConditionalCheckFailed,
    # which the 40 concurrent openers above and here meet), as they would in AWS.
    assert faults.stats["throttle_provisioned"] + faults.stats["throttle_throttling"] > 0

    # When they all close on the busy table, every slot comes back
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda lease: until_done(lambda: store.release_stream_lease(lease)), granted))
    faults.detach()
    assert store.open_streams("faulty") == 0
    assert store.acquire_stream_lease("faulty", limit, TTL) is not None
