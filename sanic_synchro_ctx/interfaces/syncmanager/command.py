"""``python -m sanic_synchro_ctx serve``: a standalone manager for SyncManager clients.

Use it where no Sanic main process starts one: ASGI servers, several separately started
apps on one host. Clients connect with ``SyncManager(address=..., authkey=...)``.

The authkey comes from ``--authkey-file`` (created with a random key if missing) or the
``SANIC_SYNCHRO_AUTHKEY`` environment variable, never from the command line, where other
users could read it. With neither, a random key is written to a 0600 file next to the socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ...errors import SynchroError
from .process import AUTHKEY_ENV, READY, new_authkey, private_directory, read_authkey_file
from .server import serve
from .wire import Address, format_address

__all__ = ["main"]


def _authkey_from_file(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return read_authkey_file(path)
        except SynchroError as exc:
            raise SystemExit(str(exc)) from None
    with os.fdopen(fd, "wb") as handle:
        key = new_authkey()
        handle.write(key)
    return key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sanic_synchro_ctx", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "serve", help="run a standalone SyncManager manager", allow_abbrev=False
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--socket", help="AF_UNIX socket path (default: in a new 0700 directory)")
    where.add_argument("--host", help="TCP host to listen on (use with --port)")
    run.add_argument("--port", type=int, default=0, help="TCP port (with --host; 0 picks one)")
    run.add_argument(
        "--authkey-file",
        help=f"file holding the authkey (created if missing); default: ${AUTHKEY_ENV}",
    )
    run.add_argument("--watch-pid", type=int, help="exit when this process exits")
    run.add_argument(
        "--lease-grace",
        action="store_true",
        help="grant no lock or semaphore lease on a name until as long as the lease asked "
        "for has passed since start (for a manager started again after one that died: "
        "a lease the old one granted may still be in use)",
    )
    run.add_argument("--cleanup", action="append", default=[], help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    notes: list[str] = []
    address: Address
    if args.host is not None:
        address = (args.host, args.port)
    elif args.socket is not None:
        address = args.socket
    else:
        address = os.path.join(private_directory(), "manager.sock")
    if args.authkey_file is not None:
        authkey = _authkey_from_file(args.authkey_file)
    elif os.environ.get(AUTHKEY_ENV):
        authkey = os.environ[AUTHKEY_ENV].strip().encode("utf-8")
    else:
        if isinstance(address, tuple):
            directory = private_directory()
        else:
            directory = os.path.dirname(os.path.abspath(address))
        key_path = os.path.join(directory, "authkey")
        authkey = _authkey_from_file(key_path)
        notes.append(f"authkey file: {key_path}")

    def announce(bound: Address) -> None:
        lines = [READY + format_address(bound), *notes]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    serve(
        address,
        authkey,
        watch_pid=args.watch_pid,
        announce=announce,
        cleanup=tuple(args.cleanup),
        lease_grace=args.lease_grace,
    )
