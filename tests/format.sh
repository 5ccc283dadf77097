#!/usr/bin/env bash
# Every C file is formatted as .clang-format says (one TAP case per file).
cd "${DPS_SOURCE_ROOT:?}" || exit 1
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
echo "1..${#files[@]}"
n=0
status=0
for file in "${files[@]}"; do
    n=$((n + 1))
    if clang-format --dry-run --Werror "$file" >/dev/null 2>&1; then
        echo "ok $n - $file is clang-formatted"
    else
        echo "not ok $n - $file is clang-formatted (run clang-format -i $file)"
        status=1
    fi
done
exit $status
