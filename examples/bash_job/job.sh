#!/usr/bin/env bash
# A job written in bash: read "x" and "n" from the job config (last argument), print the result.
set -euo pipefail
config="${@: -1}"
value() { tr -d '\n ' < "$config" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
x=$(value x)
n=$(value n)
echo "evaluating x=$x n=$n"
echo "#Auptimizer:$(awk -v x="$x" -v n="$n" 'BEGIN { print (x - 1) ^ 2 + n }')"
