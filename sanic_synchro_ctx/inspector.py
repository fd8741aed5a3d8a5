"""``sanic inspect synchro``: the shared context of a running app, as its workers see it.

Serve the app with ``Sanic(..., inspector_class=SynchroInspector)`` and ``INSPECTOR=True``.
Each worker writes its report (see :mod:`.report`) into its entry of Sanic's worker state
every ``SYNCHRO_REPORT_INTERVAL`` seconds; the Inspector runs in a process of its own and
reads them from there, so asking costs the workers nothing. Combine it with an Inspector of
your own by inheriting from both.
"""

from __future__ import annotations

from typing import Any

from sanic.worker.inspector import Inspector

from .report import add_up

__all__ = ["SynchroInspector"]

#: Worker-state keys that hold a Synchro's report start with this.
ENTRY = "synchro:"


class SynchroInspector(Inspector):
    """A Sanic Inspector with one more action, ``synchro``."""

    def synchro(self) -> dict[str, Any]:
        """Every worker's latest report per Synchro, and their statistics added up:
        ``{"<synchro name>": {"workers": {"<worker>": report}, "total": {...}}}``."""
        found: dict[str, dict[str, Any]] = {}
        for worker, state in sorted(dict(self.worker_state).items()):
            if not isinstance(state, dict):
                continue
            for key, value in state.items():
                if isinstance(key, str) and key.startswith(ENTRY):
                    found.setdefault(key[len(ENTRY) :], {})[worker] = value
        return {
            name: {"workers": workers, "total": add_up(workers.values())}
            for name, workers in sorted(found.items())
        }
