#!/usr/bin/env bash
# Check that openapi.yaml is the bundle of openapi/ (tools/openapi.sh), then
# lint it with Redocly CLI (config: redocly.yaml) and Spectral (config:
# .spectral.yaml, the spectral:oas ruleset).
# Fails on any lint error or warning of either.
#
# @redocly/cli and @stoplight/spectral-cli are installed with npm into a
# cache directory (once) so that repeated runs do not hit the network:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/crm-openapi-lint
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/crm-openapi-lint"
redocly="$cache_dir/node_modules/.bin/redocly"
# Pinned within the 1.x line: plain "@redocly/cli@1" resolves to 1.34.21, whose
# dependency @redocly/respect-core@1.34.21 is not published on the registry, so
# that install fails (ETARGET). Bump deliberately, checking that it installs.
redocly_version="1.34.20"
spectral="$cache_dir/node_modules/.bin/spectral"
spectral_version="6.16.3"

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "npm not found; installing nodejs and npm with apt-get" >&2
        apt-get install -y nodejs npm
    else
        echo "error: npm is not on PATH. Install Node.js and npm (e.g. 'sudo apt-get install -y nodejs npm') and re-run." >&2
        exit 1
    fi
fi

if [ ! -x "$redocly" ] || [ "$("$redocly" --version 2>/dev/null)" != "$redocly_version" ]; then
    echo "installing @redocly/cli@$redocly_version into $cache_dir" >&2
    mkdir -p "$cache_dir"
    npm install --no-audit --no-fund --prefix "$cache_dir" "@redocly/cli@$redocly_version" >&2
fi

if [ ! -x "$spectral" ] || [ "$("$spectral" --version 2>/dev/null)" != "$spectral_version" ]; then
    echo "installing @stoplight/spectral-cli@$spectral_version into $cache_dir" >&2
    mkdir -p "$cache_dir"
    npm install --no-audit --no-fund --prefix "$cache_dir" \
        "@redocly/cli@$redocly_version" "@stoplight/spectral-cli@$spectral_version" >&2
fi

cd "$repo_root"
# openapi/ is the source; openapi.yaml must be its bundle (tools/openapi.sh).
if ! "$repo_root/tools/openapi.sh" check; then
    echo "openapi lint: FAILED (openapi.yaml is not the bundle of openapi/)" >&2
    exit 1
fi
if ! "$spectral" lint --ruleset .spectral.yaml --fail-severity warn openapi.yaml >&2; then
    echo "openapi lint: FAILED (Spectral)" >&2
    exit 1
fi
status=0
output="$("$redocly" lint openapi.yaml 2>&1)" || status=$?
printf '%s\n' "$output"

if [ "$status" -ne 0 ]; then
    echo "openapi lint: FAILED (errors, exit status $status)" >&2
    exit "$status"
fi
if printf '%s\n' "$output" | grep -Eq 'You have [0-9]+ warnings?'; then
    echo "openapi lint: FAILED (warnings are not allowed)" >&2
    exit 1
fi
echo "openapi lint: OK" >&2
