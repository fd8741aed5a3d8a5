"""`make bench`: every figure is a ratio measured side by side in one run.

Starts its own redis-server and memcached on free loopback ports, runs the per-operation
and HTTP comparisons, prints a Markdown table and writes it to benchmarks/RESULTS.md with
the machine, Python and package versions. `--quick` runs short rounds (a smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

from tests.backends import MemcachedServer, RedisSentinels, RedisServer

from . import http, notify, ops
from .timing import Ratio, machine

HERE = Path(__file__).resolve().parent


def table(results: list[Ratio]) -> str:
    lines = [
        "| comparison | operation | ours | baseline | ratio | target | met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        digits = 0 if r.unit == "req/s" else 1
        extra = f" ({r.extra})" if r.extra else ""
        lines.append(
            f"| {r.group} | {r.name}{extra} | {r.ours:,.{digits}f} {r.unit} | "
            f"{r.base:,.{digits}f} {r.unit} | {r.ratio:.2f}x | {r.target or '-'} | "
            f"{ {True: 'yes', False: '**no**', None: '-'}[r.met] } |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--quick", action="store_true", help="short rounds: a smoke run")
    parser.add_argument("--only", choices=["ops", "notify", "http"], help="run one part")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="synchro-bench-"))
    redis = RedisServer(work).start()
    memcached = [MemcachedServer().start() for _ in range(3)]  # one, or all three together
    watched: RedisSentinels | None = None
    results: list[Ratio] = []
    try:
        if args.only in (None, "ops"):
            watched = RedisSentinels(work).start()
            results += ops.main(
                redis.url, None, [one.port for one in memcached], watched.addresses, args.quick
            )
        if args.only in (None, "notify"):
            results += notify.main(redis.url, args.quick)
        if args.only in (None, "http"):
            results += http.main(redis.url, work, args.quick)
    finally:
        redis.stop()
        for one in memcached:
            one.stop()
        if watched is not None:
            watched.stop()

    body = table(results)
    print(body)
    if args.quick:
        return
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = [
        "# Benchmark results",
        "",
        f"Produced by `make bench` on {when}. Each ratio compares two variants measured",
        "side by side in one run. µs/op rows: median latency of single calls, the two variants",
        "taking turns call by call (lower is better). req/s rows: the two servers take the load",
        "in alternating rounds, which one goes first alternating too; the ratio is the median",
        "of the per-round ratios (higher is better).",
        "",
        *machine(),
        "",
        body,
        "",
    ]
    args.output.write_text("\n".join(report))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
