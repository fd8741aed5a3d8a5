"""SyncManager: the default interface, a manager process shared by every worker.

store.py    the Store: a dict of bytes with expiry and leased locks, every method atomic
wire.py     the wire protocol: framed messages and the mutual HMAC handshake
server.py   the manager's server (blocking and pipelined connections)
client.py   the clients: blocking (a connection per thread) and one per event loop
process.py  starting a manager process, keeping one alive, meeting at one
command.py  ``python -m sanic_synchro_ctx serve``
interface.py  SyncManager itself
"""

from .interface import SyncManager

__all__ = ["SyncManager"]
