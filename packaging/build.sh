#!/usr/bin/env bash
# Build the one-folder app with PyInstaller and check that it runs.
#
#   packaging/build.sh                  (or: make package)
#   TORCH="torch --index-url https://download.pytorch.org/whl/cu128" packaging/build.sh
#
# 1. a build venv in packaging/.build-venv with $TORCH (the CPU build torch==2.13.0 unless
#    TORCH says otherwise: the same convention as the Makefile), the project and PyInstaller
# 2. PyInstaller with packaging/rlhf-desk.spec -> dist/rlhf-desk/ (work files in build/)
# 3. the built app's --version and --smoke-test (offscreen): the build fails if either does
#
# Works from Git Bash on Windows and on macOS too (there the command-line executable is
# rlhf-desk-cli, and dist/RLHF Desk.app is the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
VENV="${BUILD_VENV:-packaging/.build-venv}"
PYINSTALLER="${PYINSTALLER:-pyinstaller>=6.10}"
DIST="dist/rlhf-desk"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "build venv: $VENV"
if [ ! -e "$VENV/bin/python" ] && [ ! -e "$VENV/Scripts/python.exe" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ -e "$VENV/Scripts/python.exe" ]; then PY="$VENV/Scripts/python.exe"; else PY="$VENV/bin/python"; fi
# $TORCH is word-split on purpose: it may carry pip options such as --index-url.
# shellcheck disable=SC2086
"$PY" -m pip install --quiet $TORCH
# constraints.txt: the versions the test suite passed with (see the Makefile's lock target).
"$PY" -m pip install --quiet -c constraints.txt . "$PYINSTALLER"
"$PY" -c "import torch, transformers, peft, PySide6, PyInstaller; print('torch', torch.__version__, \
'| transformers', transformers.__version__, '| peft', peft.__version__, '| PySide6', \
PySide6.__version__, '| PyInstaller', PyInstaller.__version__)"

step "PyInstaller: packaging/rlhf-desk.spec -> $DIST"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/rlhf-desk.spec

APP="$DIST/rlhf-desk"
for candidate in "$DIST/rlhf-desk-cli.exe" "$DIST/rlhf-desk-cli" "$DIST/rlhf-desk.exe"; do
    if [ -e "$candidate" ]; then APP="$candidate"; break; fi
done

step "check: $APP --version"
version=$("$APP" --version)
expected="rlhf-desk $("$PY" -c 'import desktop_app; print(desktop_app.__version__)')"
echo "$version"
if [ "$version" != "$expected" ]; then
    echo "build.sh: the built app says '$version', expected '$expected'" >&2
    exit 1
fi

step "check: $APP --smoke-test (offscreen)"
if ! QT_QPA_PLATFORM=offscreen "$APP" --smoke-test; then
    echo "build.sh: the built app failed its smoke test (RLHF_DESK_DEBUG=1 $APP --smoke-test" \
         "shows the traceback)" >&2
    exit 1
fi

step "done"
size=$(du -sh "$DIST" | cut -f1)
echo "Built $DIST ($size) in $(( $(date +%s) - started )) s; run it with $DIST/rlhf-desk"
