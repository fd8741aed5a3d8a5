"""Redis: the primitives and Lua scripts written once, over two client adapters.

scripts.py        key encoding, TTL units and the Lua scripts
interface.py      RedisInterface: every primitive, over a RedisSession (the adapter)
aioredis.py       AIORedis: redis-py's ``redis.asyncio`` (Redis, RedisCluster)
asyncio_redis.py  AsyncioRedis: the ``asyncio_redis`` client
"""

from .aioredis import AIORedis
from .asyncio_redis import AsyncioRedis

__all__ = ["AIORedis", "AsyncioRedis"]
