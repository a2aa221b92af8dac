#!/usr/bin/env bash
# What the kernel's page cache charges for a file, by the size of the writes that first filled it: fio writes one file
# in one write size and fsyncs it, reads it back in 1 MiB pieces from the page cache (QD1 with psync, QD16 with
# libaio), then rewrites it in place in the same size, and prints MiB moved per CPU-second of fio for each. Cloud's
# members are written 272 KiB at a time (four 64 KiB chunks, each followed by its metadata sector), nbdkit's file 1 MiB
# at a time: the table shows what that difference costs each copy (docs/BENCHMARKS.md, "where each MiB goes").
#
#   bench/page-cache.sh                          # the default write sizes: 68k 272k 256k 1M 1088k 4M
#   PAGE_CACHE_SIZES="272k 256k" bench/page-cache.sh
#
# Environment:
#   PAGE_CACHE_DIR    where the file lives (default: a new directory under $TMPDIR or /tmp; use the file system the
#                     members live on)
#   PAGE_CACHE_SIZES  the write sizes, fio's notation (a number with an optional k or M suffix)
#   PAGE_CACHE_MB     the file's size in MiB (default 1088: 4 x 272 KiB fits it evenly); keep it well below the
#                     kernel's background writeback threshold, or the rewrite measures the flusher too
#   PAGE_CACHE_SECONDS  seconds per measured job (default 6)
set -euo pipefail
SIZES="${PAGE_CACHE_SIZES:-68k 272k 256k 1M 1088k 4M}"
FILE_MB="${PAGE_CACHE_MB:-1088}"
SECONDS_PER_JOB="${PAGE_CACHE_SECONDS:-6}"
command -v fio >/dev/null || { echo "page-cache.sh: 'fio' is not installed (Debian: fio)" >&2; exit 1; }
for s in $SIZES; do
  [[ "$s" =~ ^[1-9][0-9]*[kKmM]?$ ]] || {
    echo "page-cache.sh: write size '$s' is not allowed; use a whole number with an optional k or M suffix, e.g. 272k" >&2
    exit 2
  }
done
[[ "$FILE_MB" =~ ^[1-9][0-9]*$ ]] || { echo "page-cache.sh: PAGE_CACHE_MB '$FILE_MB' is not allowed; use a whole number of MiB, 1 or more" >&2; exit 2; }
[[ "$SECONDS_PER_JOB" =~ ^[1-9][0-9]*$ ]] || {
  echo "page-cache.sh: PAGE_CACHE_SECONDS '$SECONDS_PER_JOB' is not allowed; use a whole number of seconds, 1 or more" >&2; exit 2
}
DIR="${PAGE_CACHE_DIR:-$(mktemp -d -t page-cache.XXXXXX)}"
mkdir -p "$DIR" || { echo "page-cache.sh: PAGE_CACHE_DIR '$DIR' cannot be created" >&2; exit 2; }
FILE="$DIR/page-cache.img"
cleanup() {
  rm -f "$FILE" "$DIR/job.json"
  if [ -z "${PAGE_CACHE_DIR:-}" ]; then rmdir "$DIR" 2>/dev/null || true; fi
}
trap cleanup EXIT

# measure FIO-ARGS...: runs one timed fio job on the file and prints its MiB per CPU-second.
measure() {
  fio --name=m --filename="$FILE" --size="${FILE_MB}M" --time_based --runtime="$SECONDS_PER_JOB" --invalidate=0 \
    --output-format=json "$@" > "$DIR/job.json"
  python3 - "$DIR/job.json" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))['jobs'][0]
side = 'write' if job['write']['bw'] > 0 else 'read'
mib = job[side]['bw'] / 1024
cpu = (job['usr_cpu'] + job['sys_cpu']) / 100
print(f"{mib / cpu:,.0f}" if cpu > 0 else "-")
EOF
}

echo "file:   $FILE ($FILE_MB MiB), ${SECONDS_PER_JOB} s per job; MiB moved per CPU-second of fio (higher is cheaper)"
printf '%-12s %14s %14s %14s\n' "written in" "rewrite" "read QD1" "read QD16"
for s in $SIZES; do
  rm -f "$FILE"; sync
  # Fill the file once in this size, so that the page cache holds it as writes of this size leave it.
  fio --name=fill --filename="$FILE" --size="${FILE_MB}M" --bs="$s" --rw=write --ioengine=psync --end_fsync=1 \
    --output=/dev/null
  read_qd1=$(measure --bs=1M --rw=read --ioengine=psync)
  read_qd16=$(measure --bs=1M --rw=read --ioengine=libaio --iodepth=16)
  rewrite=$(measure --bs="$s" --rw=write --ioengine=psync)
  sync
  printf '%-12s %14s %14s %14s\n' "$s" "$rewrite" "$read_qd1" "$read_qd16"
done
