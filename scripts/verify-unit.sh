#!/usr/bin/env bash
# Checks contrib/systemd/shellgate.service with systemd's own tools, offline (no
# running systemd needed): `systemd-analyze verify` must accept it without a single
# warning (it exits 0 on unknown keys and bad values, so any output fails here), and
# `systemd-analyze security` must rate its exposure at most 2.0 ("OK"), so a
# hardening line dropped by mistake fails. The unit is checked inside a scratch root
# holding the real binary at its ExecStart path and a copy of this machine's system
# units (for the targets it refers to). Without systemd-analyze it skips, except
# under CI=true, where it fails (scripts/deps.sh installs Debian's systemd as root).
set -euo pipefail
cd "$(dirname "$0")/.."

unit=contrib/systemd/shellgate.service
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify-unit: systemd-analyze not found (Debian: apt-get install systemd)" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "verify-unit: SKIPPED" >&2
  exit 0
fi
units=/usr/lib/systemd/system
[ -d "$units" ] || units=/lib/systemd/system

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
mkdir -p "$root$(dirname "$exec_path")" "$root/etc/systemd/system" "$root/usr/lib/systemd"
GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3} go build -o "$root$exec_path" ./cmd/shellgate
cp "$unit" "$root/etc/systemd/system/"
cp -a "$units" "$root/usr/lib/systemd/system"

out=$(systemd-analyze verify --root="$root" "/etc/systemd/system/$(basename "$unit")" 2>&1) || {
  echo "$out" >&2
  echo "verify-unit: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "verify-unit: systemd-analyze verify warned (see above)" >&2
  exit 1
fi
if ! sec=$(systemd-analyze security --offline=yes --threshold=20 --root="$root" \
  "/etc/systemd/system/$(basename "$unit")" 2>&1); then
  echo "$sec" >&2
  echo "verify-unit: exposure above 2.0" >&2
  exit 1
fi
echo "verify-unit: $unit passes systemd-analyze verify; $(echo "$sec" | grep -o 'Overall exposure level.*')"
