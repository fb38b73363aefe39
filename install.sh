#!/bin/sh
# Install gen into .venv, a virtual environment beside this file: `./install.sh [EXTRAS]`
# (e.g. `./install.sh test`). Debian 12's python3 is "externally managed" (PEP 668): pip
# may not install into it, so gen goes into a venv, never into the system Python.
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

# Debian ships venv's pip bootstrap (ensurepip) in a separate package, python3-venv.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
  else
    echo "install.sh: $PYTHON cannot make a virtual environment (no ensurepip): install" \
         "python3-venv (sudo apt-get install python3-venv) and run it again" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Editable: gen runs from this checkout, so a `git pull` needs no reinstall.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${1:+[$1]}"
