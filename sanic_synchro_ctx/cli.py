"""``python -m sanic_synchro_ctx``: the shared state from a shell, and ``serve``.

    python -m sanic_synchro_ctx get KEY --app shop                   # the embedded manager
    python -m sanic_synchro_ctx set flags '{"beta": true}' --url redis://127.0.0.1/0 --app shop
    SANIC_SYNCHRO_URL=lmdb:///var/lib/shop python -m sanic_synchro_ctx increment hits --app shop

Values are JSON in and out, one per line. Exit codes for scripts: 0 done, 1 the key is
missing (``get``, ``ttl``, ``expire``), 2 a usage error (a bad argument, bad JSON, a value
of the wrong type), 3 the backend is unreachable. Without ``--url`` (or
``SANIC_SYNCHRO_URL``) the URL is ``manager://``: the embedded manager of the running app
``--app``. ``clear`` deletes the whole namespace and needs ``--yes``. Nothing is written
when a command fails before it reaches the backend.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from .connect import connect
from .context import BlockingSynchroContext
from .errors import SynchroConnectionError, SynchroError

__all__ = ["main"]

OK, MISSING, USAGE, UNREACHABLE = 0, 1, 2, 3
_ABSENT = object()


class _Usage(Exception):
    """A usage error found before the backend was reached."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _Usage(f"{what} is not JSON ({exc}): {text!r}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sanic_synchro_ctx",
        description="Read and change the shared state of a Sanic app using sanic-synchro-ctx.",
        allow_abbrev=False,
    )
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--url", help="the backend's URL (default: $SANIC_SYNCHRO_URL, else "
                        "manager://: the embedded manager of the running app --app)")  # fmt: skip
    common.add_argument("--app", help="the app's name: its default namespace")
    common.add_argument("--name", default="synchro", help="the Synchro's name (default synchro)")
    common.add_argument("--prefix", help="an explicit namespace (what SYNCHRO_PREFIX names)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = commands.add_parser
    one = add("get", parents=[common], help="print the value of KEY")
    one.add_argument("key")
    one = add("set", parents=[common], help="store the JSON value under KEY")
    one.add_argument("key")
    one.add_argument("value", help="JSON")
    one.add_argument("--ttl", type=_seconds, help="seconds to live")
    one = add("delete", parents=[common], help="delete KEYs; print how many existed")
    one.add_argument("keys", nargs="+", metavar="key")
    add("keys", parents=[common], help="print every key of the namespace")
    one = add("scan", parents=[common], help="print the keys matching a glob")
    one.add_argument("match", nargs="?", help="a glob, as Redis reads it")
    one = add("ttl", parents=[common], help="print the seconds KEY has left (null: no expiry)")
    one.add_argument("key")
    one = add("expire", parents=[common], help="give KEY an expiry of SECONDS")
    one.add_argument("key")
    one.add_argument("seconds", type=_seconds)
    one = add("increment", parents=[common], help="add BY (default 1) to KEY; print it")
    one.add_argument("key")
    one.add_argument("by", nargs="?", default="1")
    one = add("publish", parents=[common], help="publish a JSON message; print receivers")
    one.add_argument("channel")
    one.add_argument("message", help="JSON")
    add("stats", parents=[common], help="print this command's statistics of the interface")
    one = add("clear", parents=[common], help="delete every key of the namespace (--yes)")
    one.add_argument("--yes", action="store_true", help="yes, delete them all")
    add("serve", help="run a standalone manager (see serve --help)", add_help=False)
    return parser


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _run(ctx: BlockingSynchroContext, args: argparse.Namespace) -> int:
    command = args.command
    if command == "get":
        value = ctx.get(args.key, _ABSENT)
        if value is _ABSENT:
            sys.stderr.write(f"no key {args.key!r}\n")
            return MISSING
        _print(value)
    elif command == "set":
        ctx.set(args.key, _json(args.value, "the value"), ttl=args.ttl)
    elif command == "delete":
        _print(ctx.delete(*args.keys))
    elif command == "keys":
        for key in sorted(ctx.keys()):
            _print(key)
    elif command == "scan":
        for key in ctx.scan(args.match):
            _print(key)
    elif command == "ttl":
        if not ctx.get_many([args.key]):
            sys.stderr.write(f"no key {args.key!r}\n")
            return MISSING
        _print(ctx.ttl(args.key))
    elif command == "expire":
        if not ctx.expire(args.key, args.seconds):
            sys.stderr.write(f"no key {args.key!r}\n")
            return MISSING
    elif command == "increment":
        by = _json(args.by, "BY")
        if type(by) is not int:
            raise _Usage(f"BY must be an integer, not {args.by!r}")
        _print(ctx.increment(args.key, by))
    elif command == "publish":
        _print(ctx.publish(args.channel, _json(args.message, "the message")))
    elif command == "stats":
        _print(ctx.interface.stats())
    elif command == "clear":  # --yes checked before connecting
        ctx.clear()
    return OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        from .interfaces.syncmanager.command import main as serve

        serve(arguments)
        return OK
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help 0
        return int(exc.code or 0)
    url = args.url or os.environ.get("SANIC_SYNCHRO_URL") or "manager://"
    try:
        if args.command == "clear" and not args.yes:
            raise _Usage("clear deletes every key of the namespace: add --yes")
        with connect(url, app=args.app, name=args.name, prefix=args.prefix).sync as ctx:
            return _run(ctx, args)
    except _Usage as exc:
        sys.stderr.write(f"usage error: {exc}\n")
        return USAGE
    except SynchroConnectionError as exc:
        sys.stderr.write(f"backend unreachable: {exc}\n")
        return UNREACHABLE
    except SynchroError as exc:  # a refused value or key, an unsupported command
        sys.stderr.write(f"error: {exc}\n")
        return USAGE
