"""Memory: what the manager holds for 100,000 keys of 100-byte values, against the same
keys and values in a plain dict of bytes.

Both are measured the same way: the growth of a process's resident set (``VmRSS``) while
the keys go in: the manager process's while a worker writes them through the facade, and
a fresh interpreter's while it builds the dict.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from .timing import Ratio

KEYS = 100_000
#: Each value is this many bytes serialized: a JSON string of 98 characters and its quotes.
VALUE_SIZE = 100
CHUNK = 1_000

_PLAIN_DICT = """
import os, sys
from benchmarks.memory import resident_bytes
prefix, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
before = resident_bytes(os.getpid())
# a new bytes object per key, as the manager holds one per key
data = {f"{prefix}m{i}": b'"' + b"x" * (size - 2) + b'"' for i in range(count)}
print(resident_bytes(os.getpid()) - before)
"""


def resident_bytes(pid: int) -> int:
    """The resident set of process ``pid``, in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def plain_dict_bytes(prefix: str) -> int:
    """The growth of a fresh interpreter building the same keys and values as a dict
    (run from the project's root, as ``python -m benchmarks.run`` is)."""
    plain = subprocess.run(
        [sys.executable, "-c", _PLAIN_DICT, prefix, str(KEYS), str(VALUE_SIZE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return int(plain.stdout)


async def manager_memory(ctx: Any, manager_pid: int) -> Ratio:
    """SyncManager's manager holding KEYS values against a plain dict of the same bytes."""
    value = "x" * (VALUE_SIZE - 2)
    before = resident_bytes(manager_pid)
    for start in range(0, KEYS, CHUNK):
        await ctx.update({f"m{i}": value for i in range(start, start + CHUNK)})
    ours = resident_bytes(manager_pid) - before
    base = await asyncio.to_thread(plain_dict_bytes, ctx.interface.prefix)
    await ctx.clear()
    return Ratio(
        "SyncManager memory / a plain dict of bytes",
        f"{KEYS:,} keys of {VALUE_SIZE}-byte values",
        ours / 2**20,
        base / 2**20,
        "MiB",
        "<= 2.0x",
    )
