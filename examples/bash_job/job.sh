#!/usr/bin/env bash
# A job written in bash: read "x" and "n" from the job config (last argument), print the result.
set -euo pipefail
config="${@: -1}"
value() { tr -d '\n ' < "$config" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
x=$(value x)
n=$(value n)
echo "evaluating x=$x n=$n"
# printf with 10 significant digits (awk's plain print keeps 6: 16.1158 for 16.11575)
echo "#Auptimizer:$(awk -v x="$x" -v n="$n" 'BEGIN { printf "%.10g", (x - 1) ^ 2 + n }')"
