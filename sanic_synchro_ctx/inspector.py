"""``sanic inspect synchro``: the shared context of a running app, as its workers see it.

Serve the app with ``Sanic(..., inspector_class=SynchroInspector)`` and ``INSPECTOR=True``.
Each worker writes its report (see :mod:`.report`) into its entry of Sanic's worker state
every ``SYNCHRO_REPORT_INTERVAL`` seconds; the Inspector runs in a process of its own and
reads them from there, so asking costs the workers nothing. Combine it with an Inspector of
your own by inheriting from both.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sanic.worker.inspector import Inspector

from .errors import SynchroError
from .report import add_up

__all__ = ["SynchroInspector"]

#: Worker-state keys that hold a Synchro's report start with this.
ENTRY = "synchro:"


class SynchroInspector(Inspector):
    """A Sanic Inspector with one more action, ``synchro``:

    - ``sanic inspect synchro``: every worker's report (below);
    - ``sanic inspect synchro get KEY`` and ``sanic inspect synchro set KEY JSON``: read and
      write the shared state from the Inspector's process, behind its API key like every
      action. It reaches the store the app names by its configuration
      (``SANIC_SYNCHRO_URL``, ``SANIC_SYNCHRO_PREFIX``), else the app's embedded manager
      (as ``connect("manager://", app=...)`` does); ``--name=`` picks another Synchro.
    """

    def synchro(self, *command: str, name: str = "synchro") -> dict[str, Any]:
        if not command:
            return self._reports()
        return _data_command(self.app_info.get("app"), name, command)

    def _reports(self) -> dict[str, Any]:
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


def _data_command(app: object, name: str, command: tuple[str, ...]) -> dict[str, Any]:
    """``get KEY`` or ``set KEY JSON`` on the app's store; the answer, or what went wrong."""
    from .connect import connect

    verb, arguments = command[0], command[1:]
    usage = {"error": "usage: synchro get KEY | synchro set KEY JSON"}
    if not isinstance(app, str) or verb not in ("get", "set"):
        return usage
    if len(arguments) != (1 if verb == "get" else 2):
        return usage
    key = arguments[0]
    url = os.environ.get("SANIC_SYNCHRO_URL") or "manager://"
    prefix = os.environ.get("SANIC_SYNCHRO_PREFIX")
    if prefix and name != "synchro":
        prefix = f"{prefix}/{name}"
    try:
        if verb == "set":
            try:
                value = json.loads(arguments[1])
            except ValueError as exc:
                return {"error": f"the value is not JSON ({exc})"}
        where = {"prefix": prefix} if prefix else {"app": app, "name": name}
        with connect(url, **where).sync as ctx:
            if verb == "get":
                found = ctx.get_many([key])
                if key not in found:
                    return {"key": key, "missing": True}
                return {"key": key, "value": found[key]}
            ctx.set(key, value)
            return {"key": key, "set": value}
    except SynchroError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
