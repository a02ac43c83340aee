#!/usr/bin/env bash
# Resolves a go.mod/go.sum merge conflict between parallel branches: keep ours, add the
# other side's requirements with `go get`, then tidy (-e: the proxy refuses one version
# that a dependency's own tests name, which does not affect our build).
set -euo pipefail
cd "$(dirname "$0")/.."
theirs=${1:?usage: merge-gomod.sh BRANCH}
git show HEAD:go.mod > go.mod
git show HEAD:go.sum > go.sum
mods=$(git show "$theirs:go.mod" | awk '/^require \(/{r=1;next} /^\)/{r=0} r && !/indirect/ {print $1"@"$2}')
[ -n "$mods" ] && go get $mods
go mod tidy -e 2>/dev/null || true
git add go.mod go.sum
