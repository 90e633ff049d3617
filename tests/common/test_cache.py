"""The Redis cache backend keeps one redis-py client per connection pool."""
from __future__ import annotations

import os
import uuid

import pytest

from common.cache import RedisCache


def test_every_call_gets_the_same_client_on_the_same_pool():
    cache = RedisCache("redis://127.0.0.1:6379/15", {})  # no server needed: clients connect lazily
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client() is client and cache._cache.get_client(write=True) is client
    assert client.connection_pool is cache._cache._get_connection_pool(True)


def test_replicas_get_their_own_clients():
    cache = RedisCache("redis://127.0.0.1:6379/15,redis://127.0.0.1:6380/15", {})
    writer, reader = cache._cache.get_client(write=True), cache._cache.get_client()
    assert writer is not reader
    assert writer.connection_pool.connection_kwargs["port"] == 6379
    assert reader.connection_pool.connection_kwargs["port"] == 6380


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a Redis server (REDIS_URL)")
def test_add_get_delete_through_the_kept_client():
    cache = RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": "mathset-test"})
    key = f"k-{uuid.uuid4()}"
    assert cache.add(key, 1, timeout=5) and not cache.add(key, 2, timeout=5)
    assert cache.get(key) == 1
    cache.delete(key)
    assert cache.get(key) is None and cache.add(key, 3, timeout=5)
    cache.delete(key)
