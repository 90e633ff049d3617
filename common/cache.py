"""Django's Redis cache backend, keeping its redis-py client objects.

Django's RedisCacheClient builds a new `redis.Redis` client around its connection
pool for every cache call. Building one copies redis-py's table of response
callbacks (about 170 entries): on the submit path, where the QA-statistics
debounce (`pipeline.refresh`) makes one cache call per submit, that cost more CPU
than the call itself. A client holds no per-call state (the pool hands out the
connections and is thread-safe), so one per pool serves every call.
"""
from __future__ import annotations

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def _pool_at(self, index: int):
        if index not in self._pools:
            self._pools[index] = self._pool_class.from_url(self._servers[index], **self._pool_options)
        return self._pools[index]

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._pool_at(index))
        return client


class RedisCache(django_redis.RedisCache):
    """`django.core.cache.backends.redis.RedisCache` with one client per connection pool."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
