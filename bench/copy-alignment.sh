#!/usr/bin/env bash
# The kernel's copy cost by user-buffer alignment: pwrite from and pread into buffers 0, 8, ..., 56 bytes past a
# 64-byte boundary, over a cached 256 MiB file under $TMPDIR (docs/BENCHMARKS.md, "Buffers on cache-line boundaries");
# then the send of 1 MiB replies into a loopback TCP socket by the data's offset, the header's place and the core that
# wrote the data (sendcopy.c; BENCHMARKS.md, "The reply's send copy").
#
#   bench/copy-alignment.sh [io KiB (272)] [buffers (16)] [rounds (3)]
#
# 272 KiB is what a 1 MiB request puts on each member of a RAID-5 4+1 volume; 16 buffers are fio's queue depth.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
IO_KIB="${1:-272}"; BUFFERS="${2:-16}"; ROUNDS="${3:-3}"
for v in "$IO_KIB" "$BUFFERS" "$ROUNDS"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "copy-alignment.sh: '$v' is not a whole number above 0" >&2; exit 2; }
done
command -v gcc >/dev/null || { echo "copy-alignment.sh: gcc is not installed (Debian: apt-get install gcc)" >&2; exit 1; }
WORK="$(mktemp -d "${TMPDIR:-/tmp}/copy-alignment.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -Wall -Werror -o "$WORK/copyalign" "$HERE/copy-alignment/copyalign.c"
gcc -O2 -Wall -Werror -pthread -o "$WORK/sendcopy" "$HERE/copy-alignment/sendcopy.c"
"$WORK/copyalign" "$WORK/file" "$IO_KIB" "$BUFFERS" "$ROUNDS"
echo
"$WORK/sendcopy" "$ROUNDS"
