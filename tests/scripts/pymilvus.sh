#!/usr/bin/env bash
# pymilvus, Milvus's own Python client, from PyPI into a virtualenv under
# $MILVUS_LIKE_CACHE, for the tests of the Milvus API (issue 16).
#
#   tests/scripts/pymilvus.sh install    installs it once; prints the venv's python
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"

PYMILVUS_VERSION=3.0.2
VENV="$MILVUS_LIKE_CACHE/venv-pymilvus-$PYMILVUS_VERSION"

install() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import pymilvus" 2>/dev/null; then
    log "installing pymilvus $PYMILVUS_VERSION into $VENV"
    rm -rf "$VENV.tmp"
    # Debian's python3 makes virtualenvs only with python3-venv.
    python3 -m venv "$VENV.tmp" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV.tmp"; }
    "$VENV.tmp/bin/python" -m pip install -q --disable-pip-version-check "pymilvus==$PYMILVUS_VERSION" >&2
    rm -rf "$VENV"
    mv "$VENV.tmp" "$VENV"
  fi
  echo "$VENV/bin/python"
}

case "${1:-}" in
  install) install ;;
  *) die "usage: $0 install" ;;
esac
