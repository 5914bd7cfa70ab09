#!/usr/bin/env bash
# Builds the Python validator component: ./build.sh OUT.wasm
set -euo pipefail

out="${1:?usage: $0 OUT.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../../../wit"
version=0.25.1

if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $version" ]; then
    python3 -m pip install --quiet "componentize-py==$version"
fi

# Build from a copy: componentize-py pre-initialises the app with CPython inside wasm, which
# writes __pycache__ next to app.py. The source tree stays untouched.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/app.py" "$work/"
cd "$work"
componentize-py -d "$wit" -w validator componentize app -o "$out"
