#!/usr/bin/env bash
# Tests of the repository's own scripts and of its self-containment:
# - nothing the build, the scripts or the tests read lies outside the
#   repository (a clone with nothing beside it must pass; issue 13, item 1);
# - handler files under src/api/ never call each other, no include cycle,
#   no lower layer including a higher one (issue 14);
# - scripts/run.sh --port P serves on P and says so (it used to announce
#   8080 whatever --port said; issue 13, item 10).
# Expects test.sh's set-up (packages, build/, a running PostgreSQL). Last line:
# "scripts: N passed, N failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

# 1. No path outside the repository: "../shared" (the team's pick-up folder)
# or any "../" climbing out of the source root in build files, scripts and tests.
hits=$(cd "$ROOT" && git grep -nE '\.\./shared|SOURCE_ROOT "/\.\./' -- \
    meson.build '*.build' scripts tests src include bench tools ':!tests/scripts/run.sh' || true)
if [ -z "$hits" ]; then
    ok "no build file, script, test or source reads outside the repository"
else
    bad "paths outside the repository:"; echo "$hits"
fi
if [ -s "$ROOT/tests/data/cdnow_customers_summary.csv" ] && grep -q 'MIT' "$ROOT/tests/data/README.md"; then
    ok "the CDNOW test data and its licence note are in tests/data"
else
    bad "tests/data lacks the CDNOW summary or its licence note"
fi

# 2. Handler files never call each other (issue 14): no object of a domain
# handler file under src/api/ uses a symbol another one defines; only
# dispatch.c reaches them all, and respond.c is what they share.
objdir="$ROOT/build/libcrm_server.a.p"
if [ -d "$objdir" ]; then
    cross=""
    for o in "$objdir"/src_api_*.c.o; do
        case "$o" in *dispatch.c.o|*respond.c.o) continue ;; esac
        for other in "$objdir"/src_api_*.c.o; do
            [ "$other" = "$o" ] && continue
            case "$other" in *dispatch.c.o|*respond.c.o) continue ;; esac
            used=$(comm -12 <(nm -u "$o" | awk '{print $2}' | sort -u) \
                            <(nm --defined-only -g "$other" | awk '{print $3}' | sort -u))
            [ -n "$used" ] && cross="$cross $(basename "$o") uses $(basename "$other"): $used;"
        done
    done
    if [ -z "$cross" ]; then ok "handler files under src/api/ do not call each other"
    else bad "handler files call each other:$cross"; fi
else
    bad "no build/libcrm_server.a.p to check the handler files in"
fi

# 3. The README's Layout table names every source file.
missing=""
for f in $(cd "$ROOT" && git ls-files 'src/*.c' 'src/**/*.c'); do
    grep -qF "\`$f\`" "$ROOT/README.md" || grep -qF "\`$(basename "$f")\`" "$ROOT/README.md" ||
        missing="$missing $f"
done
if [ -z "$missing" ]; then ok "README's Layout table names every source file"
else bad "README's Layout table omits:$missing"; fi

# 4. Layers: no include cycle among the headers; the pure library (meson.build's
# crm_pure) includes only pure headers; only the API wing, http.c and main.c
# include api.h or handlers.h.
layers=$(python3 - "$ROOT" <<'PY'
import os, re, sys
root = sys.argv[1]
inc = lambda path: re.findall(r'^#include "([a-z_]+\.h)"', open(path).read(), re.M)
headers = {h: inc(os.path.join(root, "include", h)) for h in os.listdir(os.path.join(root, "include")) if h.endswith(".h")}
bad = []
def visit(h, stack):
    if h in stack:
        bad.append("include cycle: " + " -> ".join(stack[stack.index(h):] + [h])); return
    for d in headers.get(h, []):
        visit(d, stack + [h])
for h in headers:
    visit(h, [])
build = open(os.path.join(root, "meson.build")).read()
pure = re.findall(r"'src/([a-z_]+)\.c'", re.search(r"static_library\('crm_pure',(.*?)include_directories", build, re.S).group(1))
pure_h = {m + ".h" for m in pure}
def closure(h, seen):
    for d in headers.get(h, []):
        if d not in seen:
            seen.add(d); closure(d, seen)
    return seen
for m in pure:
    for h in set(inc(os.path.join(root, "src", m + ".c"))):
        for d in closure(h, {h}):
            if d not in pure_h:
                bad.append("pure module %s.c reaches %s" % (m, d))
for dirpath, _, files in os.walk(os.path.join(root, "src")):
    for f in files:
        rel = os.path.relpath(os.path.join(dirpath, f), root)
        if f.endswith(".c") and not rel.startswith("src/api/") and rel not in ("src/main.c", "src/http.c"):
            for h in inc(os.path.join(root, rel)):
                if "api.h" in closure(h, {h}) or "handlers.h" in closure(h, {h}):
                    bad.append("%s reaches the API wing through %s" % (rel, h))
print("\n".join(sorted(set(bad))))
PY
)
if [ -z "$layers" ]; then ok "no include cycle; the pure library and the lower layers include nothing above them"
else bad "layering:"; echo "$layers"; fi

# 5. run.sh --port P.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
( cd "$ROOT" && env -u CRM_PORT -u CRM_LISTEN setsid ./scripts/run.sh --port "$port" >"$log" 2>&1 ) &
pid=$!
up=0
for _ in $(seq 1 600); do
    if curl -fsS -m 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ "$up" = 1 ]; then ok "run.sh --port $port serves on $port"; else bad "run.sh --port $port: no answer on $port"; fi
if grep -q "serving on http://127.0.0.1:$port " "$log" && ! grep -q ':8080' "$log"; then
    ok "run.sh announces the port it serves on"
else
    bad "run.sh's output does not name port $port (or names 8080):"; cat "$log"
fi
pkill -TERM -f "crm-server --port $port" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { bad "run.sh did not stop on SIGTERM"; kill -9 "$pid"; }
rm -f "$log"

echo "scripts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
