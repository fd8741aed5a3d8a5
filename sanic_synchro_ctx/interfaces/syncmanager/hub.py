"""Hub: the channels of one Store, and who listens to each.

A subscriber is a ``deliver(channel, data, dropped)`` callback that never blocks: a
subscription's mailbox in this process (InMemory, or SyncManager's Store kept in-process),
or a subscribed connection of the manager (see :mod:`.push`). ``publish`` calls the
receivers of a channel under the hub's lock, so every subscriber sees the messages of all
publishers in one order.
"""

from __future__ import annotations

import threading

from ...notifications import Deliver

__all__ = ["Hub"]


class Hub:
    """Channel name -> the callbacks subscribed to it."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[Deliver, None]] = {}
        self._lock = threading.Lock()

    def add(self, channels: list[str], deliver: Deliver) -> None:
        with self._lock:
            for channel in channels:
                self._channels.setdefault(channel, {})[deliver] = None

    def remove(self, channels: list[str], deliver: Deliver) -> None:
        with self._lock:
            for channel in channels:
                receivers = self._channels.get(channel)
                if receivers is not None:
                    receivers.pop(deliver, None)
                    if not receivers:
                        del self._channels[channel]

    def publish(self, channel: str, data: bytes) -> int:
        """Hand ``data`` to every subscriber of ``channel``; how many there were."""
        with self._lock:
            receivers = self._channels.get(channel)
            if not receivers:
                return 0
            for deliver in receivers:
                deliver(channel, data, 0)
            return len(receivers)
