#!/usr/bin/env bash
# NBD benchmark: the shared fio workloads against Cloud's NBD export of a RAID-5 4+1 volume of file disks,
# and against `nbdkit file` serving one file on the same disk, in the same run. Prints every figure and
# the Cloud/nbdkit ratio with the target for each job.
#
#   bench/nbd.sh                            # the real silo, the shared workloads as given (20 s per job after a 2 s ramp)
#   FIO_RUNTIME=5 FIO_RAMP=1 bench/nbd.sh   # a quicker run
#   NBD_BENCH_TARGET=engine bench/nbd.sh    # the NBD server over the engine alone (bench/Cloud.NbdHost, no Orleans)
#   NBD_BENCH_TLS=1 bench/nbd.sh            # the TLS job: the silo's export over TLS (x509) against the same export
#                                           # without TLS, and nbdkit with TLS against nbdkit without (how far TLS can go
#                                           # on this machine), in one run; the CPU time per MiB of each server and of
#                                           # fio; then nbdcopy out of the volume plain, x509 and TLS-PSK
#
# Environment:
#   FIO_DIR          the shared fio workloads (default: ../shared/bench/fio relative to the repo root)
#   NBD_BENCH_DIR    where the silo's data, member files and the nbdkit file live (default: a new directory under $TMPDIR or /tmp)
#   NBD_BENCH_TARGET silo (default: `dotnet Cloud.Silo.dll` on free ports with a temporary data directory, the volume
#                    created with cloudctl, served by the silo's NBD endpoint through the Orleans write path) or
#                    engine (Cloud.NbdHost: the NBD server straight over a RaidVolume, no Orleans)
#   NBD_BENCH_LAYOUT raid5 (default) or file (engine target only: one file, no redundancy: the server's own overhead)
#   NBD_BENCH_MEMBER_MB  size of each member file in MiB (RAID-5 4+1 gives 4x that of data; default: the largest
#                    multiple of 64 MiB up to 512 whose five member files, with parity and block metadata, stay below
#                    nine tenths of the kernel's background writeback threshold, 384 on a 24 GiB machine). Above it
#                    the kernel writes Cloud's pages back all through a write job while nbdkit's file, a quarter
#                    smaller, is never written back: the job would compare Cloud plus the flusher with nbdkit alone.
#   NBD_URI_CLOUD    benchmark an already running Cloud export instead of starting one
#   FIO_RUNTIME, FIO_RAMP  override runtime/ramp_time (seconds) of the timed jobs
#   SECTIONS         the jobs to run (default: precondition seqwrite seqread randwrite randread randwrite-qd1)
#   NBD_BENCH_RECACHE  1: before each read job, every file of 64 MiB or more under the bench directory (Cloud's member
#                    files, nbdkit's file) is dropped from the page cache and read back in order, so that both servers
#                    read from large folios (Cloud's members written in 68 KiB slots are otherwise cached a page per
#                    folio, nbdkit's file written in 1 MiB pieces in large ones; docs/BENCHMARKS.md, session 32)
#   NBD_BENCH_DURABLE  1: the volume is created --durable (every write on stable storage before it is acknowledged)
#                    and the peer is nbdkit in write-through mode (--filter=fua fuamode=force: every write FUA, the
#                    file plugin's fdatasync), so both sides make every write durable (silo target only, no TLS)
#   NBD_BENCH_RUNS   run every job this many times (default 1), targets interleaved within each run; the report gives
#                    each run's ratios and their median (issue 18's targets are medians of 5 runs)
#   NBD_BENCH_FLOOR  1: a third target in the same run, nbdkit with bench/raid5-floor/raid5floor.c (built here with
#                    gcc; needs nbdkit-plugin-dev, libisal-dev, libxxhash-dev): RAID-5 4+1 with Cloud's per-byte work
#                    (parity, a checksum per 4 KiB block, metadata sectors, one gathered write per member) in nbdkit's
#                    server, the floor for that work on this machine; the report adds its ratios to nbdkit's and
#                    Cloud's to it. Or a list of the plugin's variants, each a target of its own: slots (= 1, target
#                    floor: Cloud's format), contiguous (floor-contig: each member's chunks back to back, metadata
#                    sectors in a region of their own), nosum (floor-nosum: Cloud's format without hashing) and md
#                    (floor-md: chunks back to back and no metadata at all, as Linux md's RAID-5)
#   NBD_BENCH_TLS    1: the TLS job (silo target only; needs certtool and psktool from gnutls-bin, setpriv when root)
#   Nbd__CongestionControl  the TCP congestion control of Cloud's NBD connections (default cubic,reno; empty = the
#                    kernel's default, which nbdkit uses)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FIO_DIR="${FIO_DIR:-$ROOT/../shared/bench/fio}"
LAYOUT="${NBD_BENCH_LAYOUT:-raid5}"
# The background writeback threshold: vm.dirty_background_bytes, or vm.dirty_background_ratio percent of the memory
# the kernel counts as dirtyable (about MemAvailable).
writeback_threshold_mb() {
  local bytes ratio
  bytes=$(cat /proc/sys/vm/dirty_background_bytes 2>/dev/null || echo 0)
  if [ "$bytes" -gt 0 ]; then echo $((bytes >> 20)); return; fi
  ratio=$(cat /proc/sys/vm/dirty_background_ratio 2>/dev/null || echo 10)
  awk -v r="$ratio" '/^MemAvailable:/ { print int($2 / 1024 * r / 100) }' /proc/meminfo
}
# Five members of 68 KiB per 64 KiB chunk (FORMAT.md: 64 KiB of data and 4 KiB of block metadata) each.
WRITEBACK_MB="$(writeback_threshold_mb)"
default_member_mb() {
  awk -v t="$WRITEBACK_MB" 'BEGIN {
    m = int(t * 0.9 / (5 * 68 / 64) / 64) * 64
    if (m > 512) m = 512
    if (m < 64) m = 64
    print m
  }'
}
MEMBER_MB="${NBD_BENCH_MEMBER_MB:-$(default_member_mb)}"
SECTIONS="${SECTIONS:-precondition seqwrite seqread randwrite randread randwrite-qd1}"
TARGET="${NBD_BENCH_TARGET:-silo}"
case "$TARGET" in silo|engine) ;; *) echo "nbd.sh: NBD_BENCH_TARGET '$TARGET' is not allowed; use silo or engine" >&2; exit 2;; esac
DURABLE="${NBD_BENCH_DURABLE:-0}"
RECACHE="${NBD_BENCH_RECACHE:-0}"
case "$RECACHE" in 0|1) ;; *) echo "nbd.sh: NBD_BENCH_RECACHE '$RECACHE' is not allowed; use 0 or 1" >&2; exit 2;; esac
RUNS="${NBD_BENCH_RUNS:-1}"
case "$RUNS" in [1-9]|[1-9][0-9]) ;; *) echo "nbd.sh: NBD_BENCH_RUNS '$RUNS' is not allowed; use a whole number from 1 to 99" >&2; exit 2;; esac
case "$DURABLE" in 0|1) ;; *) echo "nbd.sh: NBD_BENCH_DURABLE '$DURABLE' is not allowed; use 0 or 1" >&2; exit 2;; esac
TLS="${NBD_BENCH_TLS:-0}"
FLOOR="${NBD_BENCH_FLOOR:-0}"
FLOORS=""
if [ "$FLOOR" = 1 ]; then FLOOR=slots; elif [ "$FLOOR" = 0 ]; then FLOOR=""; fi
for v in $FLOOR; do
  case "$v" in
    slots) FLOORS+=" floor" ;; contiguous) FLOORS+=" floor-contig" ;; nosum) FLOORS+=" floor-nosum" ;; md) FLOORS+=" floor-md" ;;
    *) echo "nbd.sh: NBD_BENCH_FLOOR '$v' is not allowed; use 0, 1, or a list of slots, contiguous, nosum and md" >&2; exit 2;;
  esac
done
if [ -n "$FLOORS" ] && [ "$TLS" = 1 ]; then
  echo "nbd.sh: NBD_BENCH_FLOOR=1 and NBD_BENCH_TLS=1 do not go together; run them one at a time" >&2; exit 2
fi
case "$TLS" in 0|1) ;; *) echo "nbd.sh: NBD_BENCH_TLS '$TLS' is not allowed; use 0 or 1" >&2; exit 2;; esac
if [ "$TLS" = 1 ] && { [ "$TARGET" != silo ] || [ -n "${NBD_URI_CLOUD:-}" ]; }; then
  echo "nbd.sh: NBD_BENCH_TLS=1 runs against the silo it starts; unset NBD_BENCH_TARGET and NBD_URI_CLOUD" >&2; exit 2
fi
if [ "$DURABLE" = 1 ] && { [ "$TARGET" != silo ] || [ "$TLS" = 1 ] || [ -n "${NBD_URI_CLOUD:-}" ]; }; then
  echo "nbd.sh: NBD_BENCH_DURABLE=1 runs against the silo it starts, without TLS; unset NBD_BENCH_TARGET, NBD_BENCH_TLS and NBD_URI_CLOUD" >&2; exit 2
fi
if [ "$TLS" = 1 ]; then
  for tool in certtool psktool nbdcopy openssl; do
    command -v "$tool" >/dev/null || { echo "nbd.sh: '$tool' is not installed (gnutls-bin, libnbd-bin)" >&2; exit 1; }
  done
fi

if [ -n "$FLOORS" ]; then
  command -v gcc >/dev/null || { echo "nbd.sh: NBD_BENCH_FLOOR=1 needs gcc" >&2; exit 1; }
  for h in nbdkit-plugin.h isa-l/raid.h xxhash.h; do
    [ -f "/usr/include/$h" ] || { echo "nbd.sh: NBD_BENCH_FLOOR=1 needs /usr/include/$h (nbdkit-plugin-dev, libisal-dev, libxxhash-dev)" >&2; exit 1; }
  done
fi

for tool in fio nbdkit python3 dotnet; do
  command -v "$tool" >/dev/null || { echo "nbd.sh: '$tool' is not installed" >&2; exit 1; }
done
[ -f "$FIO_DIR/engine-nbd.fio" ] && [ -f "$FIO_DIR/workload.fio" ] || { echo "nbd.sh: no fio workloads in $FIO_DIR" >&2; exit 1; }

WORK="${NBD_BENCH_DIR:-$(mktemp -d -t nbd-bench.XXXXXX)}"
mkdir -p "$WORK"
HOST_PID=""
PEER_PID=""
FLOOR_PIDS=()
cleanup() {
  for pid in "${FLOOR_PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null && wait "$HOST_PID" 2>/dev/null || true
  [ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null || true
  [ -n "${PSK_PID:-}" ] && kill "$PSK_PID" 2>/dev/null && wait "$PSK_PID" 2>/dev/null || true
  if [ -z "${NBD_BENCH_DIR:-}" ]; then rm -rf "$WORK"; fi
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
  TLS_ARGS=()
  if [ "$TLS" = 1 ]; then
    # TLS offered (not required), so the same export serves the TLS and the plain-text client: x509 from a CA made
    # here with certtool; clients trust the CA through libnbd's default directory ($HOME/.pki/libnbd), because fio's
    # nbd engine does not let libnbd read files named in the URI (tls-certificates=, tls-psk-file=).
    TLSDIR="$WORK/tls"; CLIENT_HOME="$WORK/client-home"; mkdir -p "$TLSDIR" "$CLIENT_HOME/.pki/libnbd"
    printf 'cn = "bench CA"\nca\ncert_signing_key\nexpiration_days = 30\n' > "$TLSDIR/ca.info"
    printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_server\nexpiration_days = 30\n' > "$TLSDIR/server.info"
    certtool --generate-privkey --key-type=ecdsa --outfile "$TLSDIR/ca-key.pem" 2>/dev/null
    certtool --generate-self-signed --load-privkey "$TLSDIR/ca-key.pem" --template "$TLSDIR/ca.info" \
      --outfile "$TLSDIR/ca-cert.pem" 2>/dev/null
    # The server key in PKCS#8 ("PRIVATE KEY"): .NET refuses certtool's own EC key form ("ASN1 corrupted data").
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLSDIR/server-key.pem" 2>/dev/null
    certtool --generate-certificate --load-privkey "$TLSDIR/server-key.pem" --load-ca-certificate "$TLSDIR/ca-cert.pem" \
      --load-ca-privkey "$TLSDIR/ca-key.pem" --template "$TLSDIR/server.info" --outfile "$TLSDIR/server-cert.pem" 2>/dev/null
    cp "$TLSDIR/ca-cert.pem" "$CLIENT_HOME/.pki/libnbd/"
    psktool -u bench -p "$TLSDIR/keys.psk" >/dev/null
    TLS_ARGS=(--nbd-tls on --nbd-tls-cert "$TLSDIR/server-cert.pem" --nbd-tls-key "$TLSDIR/server-key.pem")
  fi
  dotnet "$SILO_DLL" --data "$WORK/silo" --name bench --silo-port "$SILO_PORT" --gateway-port "$GATEWAY_PORT" \
    --nbd-port "$NBD_PORT" "${TLS_ARGS[@]}" > "$WORK/host.log" 2>&1 &
  HOST_PID=$!
  wait_for_line "$HOST_PID" "$WORK/host.log" "up: gateway" "the silo"
  grep -E '^(NBD serving|Cloud silo)' "$WORK/host.log"
  dotnet "$CLOUDCTL_DLL" --gateway "127.0.0.1:$GATEWAY_PORT" volume create vol --size "$((4 * MEMBER_MB))MiB" \
    --level raid5 --disks 5 --chunk 64KiB $([ "$DURABLE" = 1 ] && echo --durable)
  CLOUD_URI="nbd://127.0.0.1:$NBD_PORT/vol"
  if [ "$TLS" = 1 ]; then CLOUD_URI="nbds://127.0.0.1:$NBD_PORT/vol"; fi
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

# Runs a client with the bench CA in libnbd's default directory. libnbd reads $HOME/.pki/libnbd only for users other
# than root (root's is /etc/pki/libnbd, not this script's to write), so as root the client runs as nobody.
as_client() {
  if [ "$TLS" != 1 ]; then "$@"; return; fi
  if [ "$(id -u)" -ne 0 ]; then HOME="$CLIENT_HOME" "$@"; return; fi
  chmod -R a+rX "$WORK/job.fio" "$CLIENT_HOME"; chmod a+x "$WORK"
  (cd "$CLIENT_HOME" && setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$CLIENT_HOME" NBD_URI="${NBD_URI:-}" "$@")
}

CLOUD_BYTES="$(as_client nbdinfo --size "$CLOUD_URI")"
if [ "$TLS" = 1 ]; then
  # The peer: the same export of the same silo, without TLS. Beside it, nbdkit's file plugin with TLS offered (x509,
  # gnutls, the same certificate), over TLS and without: the ratio a C server on gnutls reaches on this machine.
  PEER_NAME=plain
  PEER_URI="nbd://127.0.0.1:$NBD_PORT/vol"
  truncate -s "$CLOUD_BYTES" "$WORK/peer.img"
  # Its log goes to a file: fio ends each TLS connection without close_notify, which nbdkit reports as an error.
  nbdkit -f -i 127.0.0.1 -p "$PEER_PORT" --tls=on --tls-certificates "$TLSDIR" file file="$WORK/peer.img" \
    2>"$WORK/nbdkit.log" &
  PEER_PID=$!
  NBDKIT_URI="nbd://127.0.0.1:$PEER_PORT"
  NBDKIT_TLS_URI="nbds://127.0.0.1:$PEER_PORT"
  for _ in $(seq 1 100); do nbdinfo --size "$NBDKIT_URI" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "cloud:  $CLOUD_URI over TLS (x509, SslStream) ($CLOUD_BYTES bytes)"
  echo "plain:  $PEER_URI (the same silo and volume without TLS)"
  echo "nbdkit: $NBDKIT_TLS_URI over TLS (x509, gnutls) and $NBDKIT_URI without (file $WORK/peer.img)"
else
  # The peer: nbdkit's file plugin on one file of the same size as the Cloud volume's data, on the same disk.
  PEER_NAME=nbdkit
  truncate -s "$CLOUD_BYTES" "$WORK/peer.img"
  PEER_PORT="${PEER_PORT:-$(free_ports 1)}"
  PEER_FILTER=()
  if [ "$DURABLE" = 1 ]; then PEER_FILTER=(--filter=fua); fi
  nbdkit -f -i 127.0.0.1 -p "$PEER_PORT" "${PEER_FILTER[@]}" file file="$WORK/peer.img" \
    $([ "$DURABLE" = 1 ] && echo fuamode=force) &
  PEER_PID=$!
  PEER_URI="nbd://127.0.0.1:$PEER_PORT"
  for _ in $(seq 1 100); do nbdinfo --size "$PEER_URI" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "cloud:  $CLOUD_URI ($CLOUD_BYTES bytes, target $TARGET$([ "$DURABLE" = 1 ] && echo ", durable volume"))"
  echo "nbdkit: $PEER_URI (file $WORK/peer.img$([ "$DURABLE" = 1 ] && echo ", write-through: --filter=fua fuamode=force"))"
  if [ -n "$FLOORS" ]; then
    gcc -std=gnu11 -O3 -march=native -shared -fPIC -o "$WORK/raid5floor.so" "$ROOT/bench/raid5-floor/raid5floor.c" \
      -lisal
    FLOOR_TARGETS=()
    for f in $FLOORS; do
      case "$f" in
        floor) args=(layout=slots) ;; floor-contig) args=(layout=contiguous) ;;
        floor-nosum) args=(layout=slots checksums=no) ;; floor-md) args=(layout=md) ;;
      esac
      mkdir -p "$WORK/$f"
      port="$(free_ports 1)"
      nbdkit -f -i 127.0.0.1 -p "$port" "${PEER_FILTER[@]}" "$WORK/raid5floor.so" dir="$WORK/$f" \
        member-mib="$MEMBER_MB" "${args[@]}" $([ "$DURABLE" = 1 ] && echo fuamode=force) &
      FLOOR_PIDS+=($!)
      for _ in $(seq 1 100); do nbdinfo --size "nbd://127.0.0.1:$port" >/dev/null 2>&1 && break; sleep 0.1; done
      FLOOR_TARGETS+=("$f nbd://127.0.0.1:$port $!")
      echo "$f: nbd://127.0.0.1:$port (nbdkit with bench/raid5-floor: RAID-5 4+1, ${args[*]})"
    done
  fi
fi
# TCP congestion control: nbdkit's connections use the kernel's default; Cloud's NBD server chooses its own per
# connection (Nbd:CongestionControl, default cubic,reno; `Nbd__CongestionControl=bbr bench/nbd.sh` measures it under BBR).
SIZE_WHY=", chosen below the kernel's background writeback threshold ($WRITEBACK_MB MiB)"
echo "size:   members of $MEMBER_MB MiB$([ -z "${NBD_BENCH_MEMBER_MB:-}" ] && echo "$SIZE_WHY")"
echo "tcp:    kernel default congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown) (nbdkit); Cloud's NBD server: ${Nbd__CongestionControl-cubic,reno}"
echo "job:    cat $FIO_DIR/engine-nbd.fio $FIO_DIR/workload.fio > job.fio; NBD_URI=... fio --section=NAME --output-format=json job.fio"
if [ "$RECACHE" = 1 ]; then echo "cache:  every file of 64 MiB or more dropped and read back in order before each read job (NBD_BENCH_RECACHE=1)"; fi
echo

# cpu_ticks PID: the user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# host_busy_ticks: the whole machine's busy CPU time so far (every CPU's user, nice, system, irq, softirq and steal
# time from /proc/stat, not idle or iowait), in clock ticks: server, fio and the kernel's work for both.
host_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# written_pages: pages the kernel has written from the page cache to disk so far (/proc/vmstat nr_written). Cloud's
# member files hold data, parity and block metadata, 1.33x the volume's bytes, where nbdkit's one file holds 1x: with
# members larger than the default (above), Cloud's dirty pages pass the kernel's background writeback threshold during
# a write job and nbdkit's may not, so the kernel writes Cloud's back while the job runs and nbdkit's only after. The
# tables show how much each job made the kernel write, so that such a run shows itself.
written_pages() { awk '/^nr_written / { print $2 }' /proc/vmstat; }

# read_kib: KiB the kernel has read from disk so far (/proc/vmstat pgpgin). Both servers should read only the page
# cache (the members and nbdkit's file fit in memory, and the precondition job writes them all); a read job that had
# to go to disk (pages reclaimed between jobs, e.g. by a proactive-reclaim scheme like this VM's DAMON pageout of page
# cache idle for a minute) shows itself in the tables' last column.
read_kib() { awk '/^pgpgin / { print $2 }' /proc/vmstat; }

run_section() { # target uri section server-pid
  local out="$WORK/$1-$3.json" t0 w0 h0 p0 r0
  # Every job starts with no dirty pages: the kernel writes a file back once it has been dirty for 30 s
  # (vm.dirty_expire_centisecs), so without this the pages one job left dirty would be written back in the next one's
  # window, on whichever server happened to come next.
  sync
  t0=$(cpu_ticks "$4"); h0=$(host_busy_ticks); p0=$(written_pages); r0=$(read_kib); w0=$(date +%s.%N)
  NBD_URI="$2" as_client fio --section="$3" --output-format=json "$WORK/job.fio" 2>"$WORK/$1-$3.err" | sed '/^fio: connected to NBD server/d' > "$out" \
    || { echo "fio $1 $3 failed:" >&2; cat "$WORK/$1-$3.err" "$out" >&2; exit 1; }
  # The server's CPU over the whole fio run (ramp included) and the run's wall time: its average cores in use.
  # The host's busy time over the same window, and the MiB the kernel wrote back to disk and read from disk in it.
  echo "$(( $(cpu_ticks "$4") - t0 )) $(python3 -c "print($(date +%s.%N) - $w0)") $(getconf CLK_TCK) $(( $(host_busy_ticks) - h0 ))" \
    "$(( ($(written_pages) - p0) * $(getconf PAGESIZE) >> 20 ))" "$(( ($(read_kib) - r0) >> 10 ))" > "$WORK/$1-$3.cpu"
}

# recache: drop every large file under $WORK from the page cache (clean after sync) and read it back in order, so
# readahead caches it in large folios (NBD_BENCH_RECACHE=1, before read jobs).
recache() {
  sync
  find "$WORK" -type f -size +64M -print0 | python3 -c '
import os, sys
for path in filter(None, sys.stdin.buffer.read().split(b"\0")):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while os.read(fd, 8 << 20):
            pass
    finally:
        os.close(fd)'
}

# Interleave targets per job, so drifting load on a shared machine hits both alike.
TARGETS=("cloud $CLOUD_URI $HOST_PID" "$PEER_NAME $PEER_URI ${PEER_PID:-$HOST_PID}")
if [ "$TLS" = 1 ]; then
  TARGETS=("cloud $CLOUD_URI $HOST_PID" "plain $PEER_URI $HOST_PID" "nbdkit-tls $NBDKIT_TLS_URI $PEER_PID"
    "nbdkit $NBDKIT_URI $PEER_PID")
fi
if [ -n "$FLOORS" ]; then TARGETS+=("${FLOOR_TARGETS[@]}"); fi
# Run r's results are named NAME-SECTION (run 1) or NAME-rR-SECTION.
run_name() { if [ "$2" = 1 ]; then echo "$1"; else echo "$1-r$2"; fi; }
for run in $(seq 1 "$RUNS"); do
  for section in $SECTIONS; do
    for target in "${TARGETS[@]}"; do
      read -r name uri pid <<< "$target"
      if [ "$RECACHE" = 1 ] && [[ "$section" == *read* ]]; then recache; fi
      echo "running $section: $name$([ "$RUNS" -gt 1 ] && echo " (run $run of $RUNS)")..."
      run_section "$(run_name "$name" "$run")" "$uri" "$section" "$pid"
    done
  done
done

for run in $(seq 1 "$RUNS"); do
[ "$RUNS" -gt 1 ] && echo && echo "== run $run of $RUNS"
python3 - "$WORK" "$PEER_NAME" "$([ "$run" = 1 ] || echo "-r$run")" "$FLOORS" $SECTIONS <<'EOF'
import json, os, sys
work, peer, run, floors, sections = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5:]
# Against nbdkit: issue 18's targets (randwrite-qd1: Cloud's mean latency at most 2x nbdkit's). Against the same export
# without TLS: TLS may cost at most 20% on sequential 1 MiB.
targets = ({"seqwrite": 0.8, "seqread": 0.8} if peer == "plain"
           else {"seqwrite": 0.7, "seqread": 0.95, "randread": 0.7, "randwrite": 0.6})
def load(t, s):
    t = t + run
    with open(f"{work}/{t}-{s}.json") as f:
        job = json.load(f)["jobs"][0]
    side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    lat = side.get("lat_ns", {}) or side.get("clat_ns", {})
    return side["bw_bytes"], side["iops"], lat.get("mean", 0) / 1000.0
print(f"{'job':<14}{'metric':<8}{'cloud':>14}{peer:>14}{'ratio':>8}{'target':>8}  ")
worst = True
for s in sections:
    c, n = load("cloud", s), load(peer, s)
    small = s.startswith("rand")
    label, cv, nv = ("IOPS", c[1], n[1]) if small else ("MiB/s", c[0] / 2**20, n[0] / 2**20)
    ratio = cv / nv if nv else float("nan")
    t = targets.get(s)
    verdict = "" if t is None else ("ok" if ratio >= t else "BELOW")
    print(f"{s:<14}{label:<8}{cv:>14,.1f}{nv:>14,.1f}{ratio:>8.2f}{(f'{t:.2f}' if t else '-'):>8}  {verdict}")
    lat_ratio = c[2] / n[2] if n[2] else float("nan")
    qd1 = s == "randwrite-qd1" and peer != "plain"
    print(f"{'':<14}{'lat us':<8}{c[2]:>14,.1f}{n[2]:>14,.1f}{lat_ratio:>7.2f}x{('2.00x' if qd1 else '-'):>8}  "
          f"{('ok' if lat_ratio <= 2 else 'BELOW') if qd1 else ''}")
if peer == "plain":
    # The same jobs against nbdkit with TLS and without, from the same run: how far TLS goes for a C server on gnutls.
    print()
    print(f"{'job':<14}{'metric':<8}{'nbdkit-tls':>14}{'nbdkit':>14}{'ratio':>8}")
    for s in sections:
        c, n = load("nbdkit-tls", s), load("nbdkit", s)
        small = s.startswith("rand")
        label, cv, nv = ("IOPS", c[1], n[1]) if small else ("MiB/s", c[0] / 2**20, n[0] / 2**20)
        print(f"{s:<14}{label:<8}{cv:>14,.1f}{nv:>14,.1f}{(cv / nv if nv else float('nan')):>8.2f}")
for floor in floors:
    # The same jobs against nbdkit with Cloud's per-byte RAID-5 work (bench/raid5-floor), and Cloud against it.
    print()
    print(f"{'job':<14}{'metric':<8}{floor:>14}{peer:>14}{'ratio':>8}{'cloud/' + floor:>19}")
    for s in sections:
        f, n, c = load(floor, s), load(peer, s), load("cloud", s)
        small = s.startswith("rand")
        label, fv, nv, cv = ("IOPS", f[1], n[1], c[1]) if small else ("MiB/s", f[0] / 2**20, n[0] / 2**20, c[0] / 2**20)
        print(f"{s:<14}{label:<8}{fv:>14,.1f}{nv:>14,.1f}{(fv / nv if nv else float('nan')):>8.2f}"
              f"{(cv / fv if fv else float('nan')):>19.2f}")
        if s == "randwrite-qd1":
            print(f"{'':<14}{'lat us':<8}{f[2]:>14,.1f}{n[2]:>14,.1f}{(f[2] / n[2] if n[2] else float('nan')):>7.2f}x"
                  f"{(c[2] / f[2] if f[2] else float('nan')):>18.2f}x")

# CPU time per MiB moved: the server's (from /proc over the fio run) and fio's own (usr + sys from its report), in
# milliseconds; with the client on the same machine both share its cores. And the whole host's busy time per I/O
# (server, fio and the kernel together, from /proc/stat over the same window), in microseconds.
def cpu(t, s):
    with open(f"{work}/{t}-{s}.json") as f:
        job = json.load(f)["jobs"][0]
    with open(f"{work}/{t}-{s}.cpu") as f:
        ticks, wall, hz, host, written, read = f.read().split()
    side = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    mibs = side["bw_bytes"] / 2**20
    server_cores = int(ticks) / int(hz) / float(wall)
    host_cores = int(host) / int(hz) / float(wall)
    fio_cores = (job["usr_cpu"] + job["sys_cpu"]) / 100
    per = lambda cores, rate: 1000 * cores / rate if rate else 0
    return (server_cores, fio_cores, host_cores, per(server_cores, mibs), per(fio_cores, mibs),
            1000 * per(host_cores, side["iops"]), int(written), int(read))
names = ["cloud", peer] + (["nbdkit-tls", "nbdkit"] if peer == "plain" else []) + floors
print()
print(f"{'job':<14}{'target':<12}{'server cores':>13}{'fio cores':>11}{'host cores':>11}{'server ms/MiB':>15}{'fio ms/MiB':>12}{'host us/IO':>12}{'written back MiB':>18}{'read from disk MiB':>20}")
for s in sections:
    for t in names:
        if os.path.exists(f"{work}/{t}{run}-{s}.cpu"):
            sc, fc, hc, sm, fm, hu, wb, rd = cpu(t + run, s)
            print(f"{s:<14}{t:<12}{sc:>13.2f}{fc:>11.2f}{hc:>11.2f}{sm:>15.3f}{fm:>12.3f}{hu:>12.1f}{wb:>18,}{rd:>20,}")
EOF
done

if [ "$RUNS" -gt 1 ]; then
python3 - "$WORK" "$PEER_NAME" "$RUNS" "$FLOORS" $SECTIONS <<'EOF'
import json, statistics, sys
work, peer, runs, floors, sections = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(), sys.argv[5:]
targets = {} if peer == "plain" else {"seqwrite": 0.7, "seqread": 0.95, "randread": 0.7, "randwrite": 0.6}
def measure(t, s):
    with open(f"{work}/{t}-{s}.json") as f:
        job = json.load(f)["jobs"][0]
    x = job["write"] if job["write"]["io_bytes"] > 0 else job["read"]
    with open(f"{work}/{t}-{s}.cpu") as f:
        _, wall, hz, host, _, _ = f.read().split()
    host_us = 1e6 * int(host) / int(hz) / float(wall) / x["iops"] if x["iops"] else 0
    return x["bw_bytes"], (x.get("lat_ns", {}) or x.get("clat_ns", {})).get("mean", 0), host_us
name = lambda t, r: t if r == 1 else f"{t}-r{r}"
print()
print(f"== median of {runs} runs (Cloud / {peer} in each run; randwrite-qd1: mean latency; host us/IO: the whole machine's busy time per I/O)")
print(f"{'job':<14}{'ratios':<42}{'median':>8}{'target':>8}       {'host us/IO: cloud':>18}{peer:>9}")
for s in sections:
    qd1 = s == "randwrite-qd1" and peer != "plain"
    ratios, hosts_c, hosts_n = [], [], []
    for r in range(1, runs + 1):
        c, n = measure(name("cloud", r), s), measure(name(peer, r), s)
        ratios.append(c[1] / n[1] if qd1 else c[0] / n[0])
        hosts_c.append(c[2]); hosts_n.append(n[2])
    m = statistics.median(ratios)
    unit = "x" if qd1 else ""
    if qd1: t, verdict = "2.00x", ("ok" if m <= 2 else "BELOW")
    elif s in targets: t, verdict = f"{targets[s]:.2f}", ("ok" if m >= targets[s] else "BELOW")
    else: t, verdict = "-", ""
    print(f"{s:<14}{', '.join(f'{x:.2f}{unit}' for x in ratios):<42}{m:>7.2f}{unit or ' '}{t:>8}  {verdict:<5}"
          f"{statistics.median(hosts_c):>18.1f}{statistics.median(hosts_n):>9.1f}")
for floor in floors:
    print()
    print(f"== {floor}: nbdkit with Cloud's per-byte RAID-5 work (bench/raid5-floor) / {peer}, and Cloud / {floor}, in each run")
    print(f"{'job':<14}{floor + ' / ' + peer:<42}{'median':>8}   {'cloud / ' + floor:<36}{'median':>8}{'host us/IO: ' + floor:>25}")
    for s in sections:
        qd1 = s == "randwrite-qd1"
        fr, cf, hosts_f = [], [], []
        for r in range(1, runs + 1):
            f, n, c = measure(name(floor, r), s), measure(name(peer, r), s), measure(name("cloud", r), s)
            fr.append(f[1] / n[1] if qd1 else f[0] / n[0])
            cf.append(c[1] / f[1] if qd1 else c[0] / f[0])
            hosts_f.append(f[2])
        unit = "x" if qd1 else ""
        print(f"{s:<14}{', '.join(f'{x:.2f}{unit}' for x in fr):<42}{statistics.median(fr):>7.2f}{unit or ' '}   "
              f"{', '.join(f'{x:.2f}{unit}' for x in cf):<36}{statistics.median(cf):>7.2f}{unit or ' '}"
              f"{statistics.median(hosts_f):>25.1f}")
EOF
fi

if [ "$TLS" = 1 ]; then
  # TLS-PSK against x509 and plain text: nbdcopy of the whole volume to null: (sequential reads, several connections),
  # which unlike fio may name a PSK file. One endpoint serves one kind of credentials, so a second silo on the same
  # data serves PSK after the first stops.
  copy_mibs() { # uri
    local start end
    start=$(date +%s.%N)
    as_client nbdcopy "$1" null: || { echo "nbdcopy $1 failed" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$CLOUD_BYTES / 2**20 / ($end - $start):.1f}')"
  }
  echo
  echo "nbdcopy of the whole volume to null: (MiB/s, each TLS figure against plain text on the same silo)"
  PLAIN1=$(copy_mibs "nbd://127.0.0.1:$NBD_PORT/vol")
  X509=$(copy_mibs "nbds://127.0.0.1:$NBD_PORT/vol")
  kill "$HOST_PID"; wait "$HOST_PID" 2>/dev/null || true; HOST_PID=""
  chmod a+r "$TLSDIR/keys.psk"; chmod a+x "$TLSDIR"
  dotnet "$SILO_DLL" --data "$WORK/silo" --name bench --silo-port "$SILO_PORT" --gateway-port "$GATEWAY_PORT" \
    --nbd-port "$NBD_PORT" --nbd-tls on --nbd-tls-psk "$TLSDIR/keys.psk" > "$WORK/host-psk.log" 2>&1 &
  PSK_PID=$!
  wait_for_line "$PSK_PID" "$WORK/host-psk.log" "up: gateway" "the PSK silo"
  PLAIN2=$(copy_mibs "nbd://127.0.0.1:$NBD_PORT/vol")
  PSK=$(copy_mibs "nbds://bench@127.0.0.1:$NBD_PORT/vol?tls-psk-file=$TLSDIR/keys.psk")
  python3 - "$PLAIN1" "$X509" "$PLAIN2" "$PSK" <<'EOF'
import sys
p1, x, p2, k = map(float, sys.argv[1:])
print(f"{'x509':<6}{x:>10,.1f}  plain {p1:>10,.1f}  ratio {x / p1:.2f}")
print(f"{'psk':<6}{k:>10,.1f}  plain {p2:>10,.1f}  ratio {k / p2:.2f}")
EOF
fi
