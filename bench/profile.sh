#!/usr/bin/env bash
# Where each server's CPU goes in one job of bench/nbd.sh, by kind of work, in microseconds per MiB moved:
# Cloud's server and nbdkit sampled the same way (perf, whole machine, call stacks) during their runs of the job,
# and every sample of the server's threads put in one kind by the frames on its stack (receive, member or file
# writes, parity, checksums, replies, the socket engine, idle pool workers, ...).
#
#   bench/profile.sh [section] [seconds]     section of the shared workload (default seqwrite), seconds sampled
#                                            per target (default 8, from 4 s into its run)
#
# The same settings as bench/nbd.sh (NBD_BENCH_TARGET=silo|engine, NBD_BENCH_DURABLE, NBD_BENCH_MEMBER_MB, ...);
# NBD_BENCH_FLOOR=1 samples bench/raid5-floor as well (nbdkit doing Cloud's per-byte RAID-5 work) and adds its column;
# FIO_RUNTIME defaults to 16 here so that the sampled window lies inside the run. With NBD_BENCH_RUNS=N above 1 the
# last run is sampled: the silo has then served every job N-1 times, and its JIT compiler has finished (in the first
# run of a fresh silo, tiered compilation still took about 6 % of the machine during the sequential write). Needs perf (Debian: linux-perf)
# and root (or perf_event_paranoid <= -1). Output in a temporary directory that is printed: bench.log, the perf data
# of each target and profile.txt (the table).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECTION="${1:-seqwrite}"
SECONDS_SAMPLED="${2:-8}"
case "$SECTION" in
  seqwrite|seqread|randwrite|randread|randwrite-qd1) ;;
  *) echo "profile.sh: no section '$SECTION'; one of seqwrite, seqread, randwrite, randread, randwrite-qd1" >&2; exit 2 ;;
esac
if ! [[ "$SECONDS_SAMPLED" =~ ^[0-9]+$ ]] || [ "$SECONDS_SAMPLED" -lt 1 ] || [ "$SECONDS_SAMPLED" -gt 60 ]; then
  echo "profile.sh: seconds sampled '$SECONDS_SAMPLED' is not a whole number from 1 to 60" >&2; exit 2
fi
RUNS="${NBD_BENCH_RUNS:-1}"
case "$RUNS" in [1-9]|[1-9][0-9]) ;; *) echo "profile.sh: NBD_BENCH_RUNS '$RUNS' is not allowed; use a whole number from 1 to 99" >&2; exit 2;; esac
FLOOR="${NBD_BENCH_FLOOR:-0}"
case "$FLOOR" in 0|1) ;; *) echo "profile.sh: NBD_BENCH_FLOOR '$FLOOR' is not allowed here; use 0 or 1" >&2; exit 2;; esac
command -v perf >/dev/null || { echo "profile.sh: perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }
export FIO_RUNTIME="${FIO_RUNTIME:-16}"
if [ "$FIO_RUNTIME" -lt $((SECONDS_SAMPLED + 6)) ]; then
  echo "profile.sh: FIO_RUNTIME=$FIO_RUNTIME is too short to sample $SECONDS_SAMPLED s from 4 s in; at least $((SECONDS_SAMPLED + 6))" >&2
  exit 2
fi
OUT="$(mktemp -d /tmp/cloud-profile.XXXXXX)"
echo "profile.sh: output in $OUT"

# JIT-compiled code named in perf's reports (with W^X on, the runtime's double mapping of code hides it from perf).
export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
FREQUENCY=999  # samples per second per CPU: each sample stands for 1/FREQUENCY s of CPU time
SECTIONS="precondition $SECTION" "$ROOT/bench/nbd.sh" > "$OUT/bench.log" 2>&1 &
BENCH=$!
LAST_RUN=""; [ "$RUNS" -gt 1 ] && LAST_RUN=" (run $RUNS of $RUNS)"
sample() {  # sample NAME: waits for NAME's (last) run of the section, then records the whole machine
  local i
  for i in $(seq 1 6000); do
    grep -qF "running $SECTION: $1$LAST_RUN" "$OUT/bench.log" 2>/dev/null && break
    kill -0 "$BENCH" 2>/dev/null || { echo "profile.sh: bench/nbd.sh ended early:" >&2; tail -20 "$OUT/bench.log" >&2; exit 1; }
    sleep 0.2
  done
  sleep 4
  perf record -F "$FREQUENCY" -g -a -o "$OUT/$1.perf" -- sleep "$SECONDS_SAMPLED" >/dev/null 2>&1
  perf script -i "$OUT/$1.perf" -F comm,tid,ip,sym > "$OUT/$1.stacks" 2>/dev/null
}
sample cloud
sample nbdkit
if [ "$FLOOR" = 1 ]; then sample floor; fi
wait "$BENCH" || { echo "profile.sh: bench/nbd.sh failed:" >&2; tail -20 "$OUT/bench.log" >&2; exit 1; }

python3 - "$OUT" "$SECTION" "$SECONDS_SAMPLED" "$FREQUENCY" "$FLOOR" <<'EOF' | tee "$OUT/profile.txt"
import collections, re, sys
out, section, seconds, frequency = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
targets = ["cloud", "nbdkit"] + (["floor"] if sys.argv[5] == "1" else [])
# A sample's kind: the first rule, in this order, that any frame of its stack matches (the order matters only for
# stacks that cross kinds, such as a receive inside the socket engine's dispatch).
KINDS = [
    ("receive (socket to user memory)", ("__libc_recv", "tcp_recvmsg", "sock_recvmsg", "sock_read_iter")),
    ("member / file writes (page cache)", ("pwritev", "pwrite64", "__libc_pwrite", "ext4_file_write_iter", "generic_perform_write", "WriteGatherAtOffset")),
    ("member / file reads", ("preadv", "pread64", "__libc_pread", "ext4_file_read_iter", "filemap_read", "ReadScatterAtOffset")),
    ("flushes", ("fdatasync", "fsync")),
    ("replies (socket send)", ("__send", "__libc_sendmsg", "tcp_sendmsg", "sock_sendmsg")),
    ("parity", ("ParityDispatch", "Parity.Xor", "GaloisField", "xor_gen", "xor_into")),
    ("checksums", ("XxHash", "XXH3")),
    ("socket engine (epoll, completions)", ("epoll_wait", "SocketAsyncEngine")),
    ("idle pool workers (spin, sleep)", ("LowLevelLifoSemaphore", "__sched_yield", "futex_wait", "WaitForSignal")),
    ("wake-ups (futex wake)", ("futex_wake",)),
]
OTHER = "everything else (runtime, grains, engine, network stack)"
SERVER = {"cloud": re.compile(r"^\.NET"), "nbdkit": re.compile(r"^nbdkit"), "floor": re.compile(r"^nbdkit")}

def classify(path, server):
    kinds, total, stack, comm = collections.Counter(), 0, [], None
    def flush():
        nonlocal total
        if comm is None or not server.match(comm): return
        total += 1
        frames = " ".join(stack)
        for name, keys in KINDS:
            if any(k in frames for k in keys):
                kinds[name] += 1
                return
        kinds[OTHER] += 1
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                flush(); stack, comm = [], None
            elif not line[0].isspace():
                comm = line.split(None, 1)[0] if not line.startswith(".NET") else ".NET"
            else:
                parts = line.strip().split(None, 1)
                stack.append(parts[1] if len(parts) > 1 else parts[0])
    flush()
    return kinds, total

# MiB moved per second in each target's (last) run of the section, as bench/nbd.sh reports it (IOPS x 4 KiB for random
# jobs): its last table of the section.
# jobs): its last table of the section (the floor's from the table headed "floor").
rate, table = {}, "cloud"
with open(f"{out}/bench.log") as f:
    for line in f:
        cells = line.split()
        if cells[:1] == ["job"] and len(cells) > 2:
            table = "floor" if cells[2] == "floor" else "cloud"
        if len(cells) >= 4 and cells[0] == section and cells[1] in ("MiB/s", "IOPS"):
            c, n = float(cells[2].replace(",", "")), float(cells[3].replace(",", ""))
            scale = 1.0 if cells[1] == "MiB/s" else 4096 / 2**20
            rate.update({table: c * scale, "nbdkit": n * scale})
if not rate:
    sys.exit(f"profile.sh: no {section} figures in {out}/bench.log")
us_per_sample = 1e6 / frequency
result = {}
for target in targets:
    kinds, total = classify(f"{out}/{target}.stacks", SERVER[target])
    mib = rate[target] * seconds
    result[target] = ({k: v * us_per_sample / mib for k, v in kinds.items()}, total * us_per_sample / mib)
print(f"{section}: server CPU per MiB moved, by kind of work (us/MiB; {seconds:.0f} s sampled in each run; "
      + ", ".join(f"{t} {rate[t]:,.1f} MiB/s" for t in targets) + ")")
print(f"{'kind':<58}" + "".join(f"{t:>9}" for t in targets))
names = [k for k, _ in KINDS] + [OTHER]
for k in names:
    v = [result[t][0].get(k, 0.0) for t in targets]
    if any(v): print(f"{k:<58}" + "".join(f"{x:>9.1f}" for x in v))
print(f"{'server total':<58}" + "".join(f"{result[t][1]:>9.1f}" for t in targets))
EOF
