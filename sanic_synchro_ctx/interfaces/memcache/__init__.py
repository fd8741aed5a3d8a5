"""Memcache: the context in memcached, through ``aiomcache``.

client.py       aiomcache's client made safe to cancel; the text protocol
keys.py         any str key to a valid memcached key, injectively
counters.py     the counter codec: signed 64-bit counters on incr, marked values
expiry.py       memcached's expiry, the deadline in the item's flags
generations.py  clear() without flush_all; the (batched) exchanges that read the generation
interface.py    Memcache itself (one server)
rendezvous.py   which of several servers holds a key (rendezvous hashing)
sharded.py      Memcache(servers=[...]): one single-server Memcache per server
"""

from .interface import Memcache

__all__ = ["Memcache"]
