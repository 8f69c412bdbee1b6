#!/usr/bin/env bash
# The contract in pieces: openapi/ (paths/, components/) is the source,
# edited by hand; openapi.yaml at the top is generated from it by Redocly's
# bundle and checked in, so readers and tools get one file.
#   tools/openapi.sh bundle   regenerate openapi.yaml from openapi/
#   tools/openapi.sh check    fail if openapi.yaml is not what bundle makes
#   tools/openapi.sh split    (once, or to re-cut) openapi.yaml -> openapi/
# Redocly CLI comes from tests/lint_openapi.sh's cache (installed there).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
redocly="${XDG_CACHE_HOME:-$HOME/.cache}/crm-openapi-lint/node_modules/.bin/redocly"
[ -x "$redocly" ] || { echo "tools/openapi.sh: run tests/lint_openapi.sh once to install Redocly" >&2; exit 1; }
cd "$root"
case "${1:-}" in
    bundle)
        "$redocly" bundle openapi/openapi.yaml -o openapi.yaml >/dev/null ;;
    check)
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        "$redocly" bundle openapi/openapi.yaml -o "$tmp/openapi.yaml" >/dev/null
        if ! cmp -s "$tmp/openapi.yaml" openapi.yaml; then
            echo "openapi.yaml is not the bundle of openapi/: edit openapi/ and run tools/openapi.sh bundle" >&2
            diff -u openapi.yaml "$tmp/openapi.yaml" | head -40 >&2
            exit 1
        fi ;;
    split)
        rm -rf openapi
        "$redocly" split openapi.yaml --outDir openapi >/dev/null
        "$redocly" bundle openapi/openapi.yaml -o openapi.yaml >/dev/null ;;
    *)
        echo "usage: tools/openapi.sh bundle|check|split" >&2; exit 2 ;;
esac
