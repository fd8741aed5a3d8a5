#!/bin/sh
# Install the server binaries the tests start (redis-server, redis-cli, memcached) when missing;
# with the argument "bench", also the HTTP load generator the benchmarks use (wrk).
# Debian/Ubuntu: apt-get (as root, or through sudo). Elsewhere: say what to install.
set -eu
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-cli >/dev/null 2>&1 || missing="$missing redis-tools"
command -v memcached >/dev/null 2>&1 || missing="$missing memcached"
if [ "${1:-}" = "bench" ]; then
    command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
fi
[ -z "$missing" ] && exit 0
echo "installing test servers:$missing"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get here: install$missing with your package manager" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
