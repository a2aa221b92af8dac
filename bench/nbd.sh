#!/usr/bin/env bash
# NBD benchmark: the shared fio workloads against Cloud's NBD export of a RAID-5 4+1 volume of file disks,
# and against `nbdkit file` serving one file on the same disk, in the same run. Prints every figure and
# the Cloud/nbdkit ratio with the target for each job.
#
#   bench/nbd.sh                            # the real silo, the shared workloads as given (20 s per job after a 2 s ramp)
#   FIO_RUNTIME=5 FIO_RAMP=1 bench/nbd.sh   # a quicker run
#   NBD_BENCH_TARGET=engine bench/nbd.sh    # the NBD server over the engine alone (bench/Cloud.NbdHost, no Orleans)
#
# Environment:
#   FIO_DIR          the shared fio workloads (default: ../shared/bench/fio relative to the repo root)
#   NBD_BENCH_DIR    where the silo's data, member files and the nbdkit file live (default: a new directory under $TMPDIR or /tmp)
#   NBD_BENCH_TARGET silo (default: `dotnet Cloud.Silo.dll` on free ports with a temporary data directory, the volume
#                    created with cloudctl, served by the silo's NBD endpoint through the Orleans write path) or
#                    engine (Cloud.NbdHost: the NBD server straight over a RaidVolume, no Orleans)
#   NBD_BENCH_LAYOUT raid5 (default) or file (engine target only: one file, no redundancy: the server's own overhead)
#   NBD_BENCH_MEMBER_MB  size of each member file in MiB (default 512; RAID-5 4+1 gives 4x that of data)
#   NBD_URI_CLOUD    benchmark an already running Cloud export instead of starting one
#   FIO_RUNTIME, FIO_RAMP  override runtime/ramp_time (seconds) of the timed jobs
#   SECTIONS         the jobs to run (default: precondition seqwrite seqread randwrite randread randwrite-qd1)
#   Nbd__CongestionControl  the TCP congestion control of Cloud's NBD connections (default cubic,reno; empty = the
#                    kernel's default, which nbdkit uses)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FIO_DIR="${FIO_DIR:-$ROOT/../shared/bench/fio}"
LAYOUT="${NBD_BENCH_LAYOUT:-raid5}"
MEMBER_MB="${NBD_BENCH_MEMBER_MB:-512}"
SECTIONS="${SECTIONS:-precondition seqwrite seqread randwrite randread randwrite-qd1}"
TARGET="${NBD_BENCH_TARGET:-silo}"
case "$TARGET" in silo|engine) ;; *) echo "nbd.sh: NBD_BENCH_TARGET '$TARGET' is not allowed; use silo or engine" >&2; exit 2;; esac

for tool in fio nbdkit python3 dotnet; do
  command -v "$tool" >/dev/null || { echo "nbd.sh: '$tool' is not installed" >&2; exit 1; }
done
[ -f "$FIO_DIR/engine-nbd.fio" ] && [ -f "$FIO_DIR/workload.fio" ] || { echo "nbd.sh: no fio workloads in $FIO_DIR" >&2; exit 1; }

WORK="${NBD_BENCH_DIR:-$(mktemp -d -t nbd-bench.XXXXXX)}"
mkdir -p "$WORK"
HOST_PID=""
PEER_PID=""
cleanup() {
  [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  [ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null || true
  [ -z "${NBD_BENCH_DIR:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT

# free_ports N: N distinct free ports (all held open while choosing, so no two are the same).
free_ports() { python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }

# The job file: engine part then the shared workload, optionally with shorter timed jobs.
cat "$FIO_DIR/engine-nbd.fio" "$FIO_DIR/workload.fio" > "$WORK/job.fio"
if [ -n "${FIO_RUNTIME:-}" ]; then sed -i "s/^runtime=20$/runtime=${FIO_RUNTIME}/" "$WORK/job.fio"; fi
if [ -n "${FIO_RAMP:-}" ]; then sed -i "s/^ramp_time=2$/ramp_time=${FIO_RAMP}/" "$WORK/job.fio"; fi

wait_for_line() { # pid log pattern what
  for _ in $(seq 1 1200); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { echo "$4 exited:" >&2; cat "$2" >&2; exit 1; }
    sleep 0.1
  done
  echo "$4 did not start within 120 s:" >&2; cat "$2" >&2; exit 1
}

if [ -n "${NBD_URI_CLOUD:-}" ]; then
  CLOUD_URI="$NBD_URI_CLOUD"
elif [ "$TARGET" = silo ]; then
  # The real silo: one silo, localhost clustering, data under $WORK/silo, every port free; the volume is a RAID-5 4+1
  # of file disks created with cloudctl, and fio talks to the silo's NBD endpoint (front-end grain, delegated writes).
  echo "building the silo and cloudctl (Release)..."
  dotnet build -c Release -v q -nologo "$ROOT/silo/Cloud.Silo.csproj" >/dev/null
  dotnet build -c Release -v q -nologo "$ROOT/client/cloudctl/cloudctl.csproj" >/dev/null
  SILO_DLL="$ROOT/silo/bin/Release/net10.0/Cloud.Silo.dll"
  CLOUDCTL_DLL="$ROOT/client/cloudctl/bin/Release/net10.0/cloudctl.dll"
  read -r SILO_PORT GATEWAY_PORT NBD_PORT PEER_PORT < <(free_ports 4)
  dotnet "$SILO_DLL" --data "$WORK/silo" --name bench --silo-port "$SILO_PORT" --gateway-port "$GATEWAY_PORT" \
    --nbd-port "$NBD_PORT" > "$WORK/host.log" 2>&1 &
  HOST_PID=$!
  wait_for_line "$HOST_PID" "$WORK/host.log" "up: gateway" "the silo"
  grep -E '^(NBD serving|Cloud silo)' "$WORK/host.log"
  dotnet "$CLOUDCTL_DLL" --gateway "127.0.0.1:$GATEWAY_PORT" volume create vol --size "$((4 * MEMBER_MB))MiB" \
    --level raid5 --disks 5 --chunk 64KiB
  CLOUD_URI="nbd://127.0.0.1:$NBD_PORT/vol"
else
  # The engine alone: RAID-5 4+1 over member files in $WORK/cloud, served by Cloud.NbdHost.
  echo "building Cloud.NbdHost (Release)..."
  dotnet build -c Release -v q -nologo "$ROOT/bench/Cloud.NbdHost/Cloud.NbdHost.csproj" >/dev/null
  HOST_DLL="$ROOT/bench/Cloud.NbdHost/bin/Release/net10.0/Cloud.NbdHost.dll"
  mkdir -p "$WORK/cloud"
  dotnet "$HOST_DLL" --dir "$WORK/cloud" --layout "$LAYOUT" --members 5 --member-bytes $((MEMBER_MB << 20)) \
    --chunk-bytes 65536 --name vol --port "$(free_ports 1)" > "$WORK/host.log" 2>&1 &
  HOST_PID=$!
  wait_for_line "$HOST_PID" "$WORK/host.log" '^NBD_URI=' "Cloud.NbdHost"
  CLOUD_URI="$(sed -n 's/^NBD_URI=//p' "$WORK/host.log")"
  sed -n '2p' "$WORK/host.log"
fi

# The peer: nbdkit's file plugin on one file of the same size as the Cloud volume's data, on the same disk.
CLOUD_BYTES="$(python3 - "$CLOUD_URI" <<'EOF'
import subprocess, sys, json
out = subprocess.run(["nbdinfo", "--json", sys.argv[1]], capture_output=True, text=True, check=True).stdout
print(json.loads(out)["exports"][0]["export-size"])
EOF
)"
truncate -s "$CLOUD_BYTES" "$WORK/peer.img"
PEER_PORT="${PEER_PORT:-$(free_ports 1)}"
nbdkit -f -i 127.0.0.1 -p "$PEER_PORT" file file="$WORK/peer.img" &
PEER_PID=$!
PEER_URI="nbd://127.0.0.1:$PEER_PORT"
for _ in $(seq 1 100); do nbdinfo --size "$PEER_URI" >/dev/null 2>&1 && break; sleep 0.1; done

echo "cloud:  $CLOUD_URI ($CLOUD_BYTES bytes, target $TARGET)"
echo "nbdkit: $PEER_URI (file $WORK/peer.img)"
# TCP congestion control: nbdkit's connections use the kernel's default; Cloud's NBD server chooses its own per
# connection (Nbd:CongestionControl, default cubic,reno; `Nbd__CongestionControl=bbr bench/nbd.sh` measures it under BBR).
echo "tcp:    kernel default congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown) (nbdkit); Cloud's NBD server: ${Nbd__CongestionControl-cubic,reno}"
echo "job:    cat $FIO_DIR/engine-nbd.fio $FIO_DIR/workload.fio > job.fio; NBD_URI=... fio --section=NAME --output-format=json job.fio"
echo

run_section() { # target uri section
  local out="$WORK/$1-$3.json"
  NBD_URI="$2" fio --section="$3" --output-format=json "$WORK/job.fio" 2>"$WORK/$1-$3.err" | sed '/^fio: connected to NBD server/d' > "$out" \
    || { echo "fio $1 $3 failed:" >&2; cat "$WORK/$1-$3.err" "$out" >&2; exit 1; }
}

# Interleave targets per job, so drifting load on a shared machine hits both alike.
for section in $SECTIONS; do
  echo "running $section: cloud..."
  run_section cloud "$CLOUD_URI" "$section"
  echo "running $section: nbdkit..."
  run_section nbdkit "$PEER_URI" "$section"
done

python3 - "$WORK" $SECTIONS <<'EOF'
import json, sys
work, sections = sys.argv[1], sys.argv[2:]
targets = {"seqwrite": 0.5, "seqread": 0.7, "randread": 0.5, "randwrite": 0.25}
def load(t, s):
    with open(f"{work}/{t}-{s}.json") as f:
        job = json.load(f)["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    lat = side.get("lat_ns", {}) or side.get("clat_ns", {})
    return side["bw_bytes"], side["iops"], lat.get("mean", 0) / 1000.0
print(f"{'job':<14}{'metric':<8}{'cloud':>14}{'nbdkit':>14}{'ratio':>8}{'target':>8}  ")
worst = True
for s in sections:
    c, n = load("cloud", s), load("nbdkit", s)
    small = s.startswith("rand")
    label, cv, nv = ("IOPS", c[1], n[1]) if small else ("MiB/s", c[0] / 2**20, n[0] / 2**20)
    ratio = cv / nv if nv else float("nan")
    t = targets.get(s)
    verdict = "" if t is None else ("ok" if ratio >= t else "BELOW")
    print(f"{s:<14}{label:<8}{cv:>14,.1f}{nv:>14,.1f}{ratio:>8.2f}{(f'{t:.2f}' if t else '-'):>8}  {verdict}")
    print(f"{'':<14}{'lat us':<8}{c[2]:>14,.1f}{n[2]:>14,.1f}")
EOF
