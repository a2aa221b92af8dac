#!/usr/bin/env bash
# Installs what the tests need and is missing, then runs every test.
# Safe to run again: each step checks before it installs.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: ISA-L (parity oracle), PostgreSQL (clustering), NBD clients and fio,
# qemu-utils, nbdkit, fuse3 and mount (nbdfuse comes with libnbd-bin; losetup with mount);
# gnutls-bin for psktool and certtool (the NBD TLS tests' PSK keys, bench/nbd.sh's certificates); gcc,
# nbdkit-plugin-dev and libxxhash-dev to build bench/raid5-floor (RaidFloorPluginTests, NBD_BENCH_FLOOR).
DEB_PACKAGES=(libisal-dev postgresql qemu-utils libnbd-bin nbdkit fio fuse3 e2fsprogs util-linux mount procps iproute2
  gnutls-bin gcc nbdkit-plugin-dev libxxhash-dev)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages (Azurite) from the lock file. Node 20 is in the machine image (NodeSource); Azurite
# 3.37.0 declares node >=22 but runs on 20 (npm only warns).
if [ -f package-lock.json ] && ! command -v npm >/dev/null; then
  echo "test.sh: installing Node.js and npm (Debian) for Azurite"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ -f package-lock.json ] && [ ! -x node_modules/.bin/azurite-blob ]; then
  echo "test.sh: installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
dotnet test Cloud.sln --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" || status=$?

# Failures again at the end, so the last lines of a long log name them.
awk '/^ *Failed [A-Za-z_][A-Za-z0-9_.]*/ { n = 40; print "test.sh: FAILED:" }
     n > 0 { print; n-- }' "$log"

# One closing line over every test project: "N passed, N failed, N skipped".
awk '/^ *Passed: *[0-9]+ *$/  { p += $2 }
     /^ *Failed: *[0-9]+ *$/  { f += $2 }
     /^ *Skipped: *[0-9]+ *$/ { s += $2 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
