#!/usr/bin/env bash
# `make install`: the project's virtualenv (.venv) with the pinned packages of
# constraints.txt, without installing anything into the Python it starts from, so it
# works with Debian/Ubuntu's "externally managed" /usr/bin/python3 as with pyenv's.
#
# Phases, one line each with its time (a failing phase prints its full output):
#   python    pick a Python 3.11: $PYTHON, else python3.11, else python3
#   venv      `python -m venv .venv` (reused when it is already a 3.11 venv)
#   uv        uv, pinned, installed *inside* the venv with the venv's own pip
#   packages  `uv pip install -e '.[dev,bench]' -c constraints.txt` into the venv
#
# Environment: PYTHON (interpreter to use), VENV (default .venv); uv's own variables
# (UV_CACHE_DIR, UV_INDEX_URL, ...) and pip's (PIP_INDEX_URL, ...) are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
UV_VERSION=0.13.9
LOG="$(mktemp "${TMPDIR:-/tmp}/chroma-install.XXXXXX")"
trap 'rm -f "$LOG"' EXIT
started=$(date +%s.%N)
phase_start=$started

say() { echo "install: $*" >&2; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
begin() { phase_start=$(date +%s.%N); }
done_() { say "$1 ($(elapsed "$phase_start"))"; }
fail() { say "$1"; [ -s "$LOG" ] && cat "$LOG" >&2; exit 1; }
# Runs a command with its output kept in $LOG, shown only if it fails.
quiet() { "$@" >"$LOG" 2>&1 || fail "failed: $*"; }

is_311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

pick_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && is_311 "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

begin
PY="$(pick_python)" || fail "needs Python 3.11 (found: $(python3 --version 2>&1 || echo none)); \
install it (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) or pass PYTHON=/path/to/python3.11"
done_ "python: $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"

# A venv left by an older `make install` (made by uv: no pip inside) is made again.
begin
if is_311 "$VENV/bin/python" && { "$VENV/bin/python" -m uv --version 2>/dev/null |
    grep -q " $UV_VERSION" || "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
  done_ "venv: $VENV reused"
else
  if ! "$PY" -m venv --clear "$VENV" >"$LOG" 2>&1; then
    fail "'$PY -m venv' failed: its venv module (with ensurepip) is missing? \
Debian/Ubuntu: apt-get install python3.11-venv"
  fi
  done_ "venv: $VENV created"
fi

begin
if "$VENV/bin/python" -m uv --version 2>/dev/null | grep -q " $UV_VERSION"; then
  done_ "uv: $UV_VERSION present"
else
  quiet "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  done_ "uv: $UV_VERSION installed in the venv"
fi

# uv's summary lines (resolved, downloading, installed) show it is alive; the full
# output (one line per package) only on failure.
begin
say "packages: installing the pins of constraints.txt (~1 GB in $VENV; downloaded once)"
status=0
"$VENV/bin/python" -m uv pip install --python "$VENV/bin/python" -e '.[dev,bench]' \
    -c constraints.txt 2>&1 | tee "$LOG" |
  { grep --line-buffered -E '^ *(Resolved|Prepared|Installed|Uninstalled|Audited|Downloading) ' \
    || true; } | sed -u 's/^ */install:   /' >&2 || status=$?
[ "$status" -eq 0 ] || fail "uv pip install failed:"
done_ "packages: $("$VENV/bin/python" -m uv pip list --python "$VENV/bin/python" 2>/dev/null |
  tail -n +3 | wc -l) in $VENV"
say "done in $(elapsed "$started")"
