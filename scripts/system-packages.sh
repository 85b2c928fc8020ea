#!/usr/bin/env bash
# The Debian packages the test suite needs, installed when missing. `make test` and `.ci/run`
# both call this script, so the list lives here only.
#   as root:  apt-get update once, then apt-get install -y what is missing
#   not root: print the one command to run, and stop (exit 1)
set -euo pipefail

missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
# Debian's python3 ships venv without ensurepip until python3-venv is installed.
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
# Browser tests drive Debian's chromium through Playwright; never a downloaded browser.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Redis tests start their own redis-server on a free port.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The multi-node tests put HAProxy and nginx (deploy/) in front of several nodes.
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
# The SSE tests stream with `curl -N` as docs/protocol.md shows.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Third-party JavaScript clients (graphql-ws) run in Node.js; npm installs them (tests/js).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# `make test-compiled` builds the mypyc wheel (docs/compiled.md): a C compiler and Python's headers.
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
python3 -c "import pathlib, sysconfig; assert (pathlib.Path(sysconfig.get_paths()['include']) / 'Python.h').is_file()" \
    >/dev/null 2>&1 || missing+=(python3-dev)

if ((${#missing[@]} == 0)); then
    exit 0
fi
if [ "$EUID" -ne 0 ]; then
    echo "hubbub's tests need these Debian packages: ${missing[*]}" >&2
    echo "Install them once, then run make test again:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages the tests need: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y "${missing[@]}"
