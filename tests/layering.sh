#!/usr/bin/env bash
# The folder layout is the architecture: a file may include headers of its own
# layer and of the layers below it, never above. One TAP case per layer, and
# one for include cycles between headers.
#
#   common/     the base: logging, files, the domain types
#   crypto/     common
#   store/      common, crypto
#   dataplane/  common, crypto, store
#   perf/       common, crypto, store, dataplane
#   control/    common, crypto, store, dataplane
#   tests/      anything
cd "${DPS_SOURCE_ROOT:?}" || exit 1
declare -A allowed=(
    [common]="common"
    [crypto]="common crypto"
    [store]="common crypto store"
    [dataplane]="common crypto store dataplane"
    [perf]="common crypto store dataplane perf"
    [control]="common crypto store dataplane control"
)
layers=(common crypto store dataplane perf control)
echo "1..$((${#layers[@]} + 1))"
status=0
for index in "${!layers[@]}"; do
    layer=${layers[$index]} n=$((index + 1)) bad=""
    for file in $(git ls-files "$layer/*.c" "$layer/*.h" 2>/dev/null); do
        while read -r included; do
            folder=${included%%/*}
            case " ${allowed[$layer]} " in
            *" $folder "*) ;;
            *) bad+="$file includes $included"$'\n' ;;
            esac
        done < <(sed -n 's/^#include "\([a-z_]*\/[^"]*\)".*/\1/p' "$file")
    done
    if [ -z "$bad" ]; then
        echo "ok $n - $layer/ includes only ${allowed[$layer]}"
    else
        echo "not ok $n - $layer/ includes only ${allowed[$layer]}"
        printf '%s' "$bad" | sed 's/^/# /'
        status=1
    fi
done

# Cycles: a depth-first walk over header-to-header includes.
n=$((${#layers[@]} + 1))
cycle=$(python3 - <<'PY'
import re, subprocess, sys
files = subprocess.run(["git", "ls-files", "*.h", "*.c"], capture_output=True, text=True).stdout.split()
edges = {}
for f in files:
    try:
        text = open(f, encoding="utf-8", errors="replace").read()
    except OSError:
        continue
    edges[f] = [i for i in re.findall(r'^#include "([^"]+)"', text, re.M) if i in files or True]
state, stack = {}, []
def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in edges.get(node, []):
        if nxt not in edges:
            continue
        if state.get(nxt) == 1:
            print(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            sys.exit(0)
        if nxt not in state:
            visit(nxt)
    stack.pop()
    state[node] = 2
sys.setrecursionlimit(10000)
for f in sorted(edges):
    if f not in state:
        visit(f)
PY
)
if [ -z "$cycle" ]; then
    echo "ok $n - no include cycle"
else
    echo "not ok $n - no include cycle"
    echo "# $cycle"
    status=1
fi
exit $status
