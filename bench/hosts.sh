#!/usr/bin/env bash
# The multi-host bed by hand: PostgreSQL and N silo hosts on this machine, each its own loopback address
# (127.0.0.11, 127.0.0.12, ...), Unix user (cloud-h1, ...; created when run as root) and 0700 data directory.
# Prints each host's gateway and NBD endpoint; Ctrl+C stops them all and deletes the bed.
#   bench/hosts.sh [--hosts N] [--page-blobs CONNSTRING]
# CLOUD_BED_SILO=DIR runs the silo published in DIR (e.g. ReadyToRun-compiled) instead of the repository's build.
# The failover measurement (Release build; Azurite from node_modules unless --page-blobs names an account): N kills
# of the catalog's host while the other hosts write; prints each trial and the median and worst time to writes
# flowing again, beside a control (the same measure from a moment just before the kill, nothing killed: the writers'
# own stalls on a saturated Azurite), and exits 1 if an acknowledged write was lost or scrub found a mismatch.
#   bench/hosts.sh --failover-trials N [--seed N] [--hosts N] [--rate W]
# --rate W: each survivor's writers issue W writes/s between them (open loop) instead of back to back, which keeps the
# single-process Azurite below saturation, so that the figure is the failover's and not the emulator's queue.
# A trial slower than 15 s prints its writers' stalls and the load table sampled once a second after the kill; with
# CLOUD_BED_LOGS=DIR set, every host's output is kept in DIR for such a trial (trialN-hK.log) and at the end.
# Delegation across processes (a durable RAID-5 volume over the hosts' disk pools, no Azurite): for one slowed host
# (the last) with 20 ms and 100 ms of injected disk latency and with its CPU capped to 25 % of a core (cgroup), durable
# writes through every host with load-based delegation and with the slowed host as fixed target, a fresh bed each;
# prints IOPS, MiB/s and the ratio per case, and exits 1 if a ratio (the median with --runs) is below 1.5x.
#   bench/hosts.sh --delegation [--seconds N (measured per run, default 20)] [--warm-up N (at least N s of writing before
#     the measured window, and 20 writes per host; default 90: the silos compile hot code for about the first minute)]
#     [--case 20ms|100ms|cpu (repeatable; default all)] [--runs N (default 1: each case N times, a fresh pair of beds
#     each, the modes' order alternating from run to run; the ratio reported and judged is the median of the runs')]
#     [--hosts N] [--seed N]
# Members across hosts (issue 15 item 7): one 5-host bed with disk pools, two durable RAID-5 4+1 volumes, one with a
# member in each host's pool and one with every member a file of the delegate's host (the catalog's host, where
# `--disk file:` members go; every silo's Cloud:Delegation:FixedTarget is itself and fio talks to that host's NBD
# endpoint only, so both volumes have the same delegate); the shared fio jobs (FIO_DIR, default ../shared/bench/fio;
# SECTIONS, FIO_RUNTIME, FIO_RAMP as in bench/nbd.sh) on each, interleaved; prints throughput, the remote/local ratio
# and the silos' and fio's CPU time per I/O, and exits 1 below 0.6x for sequential 1 MiB or 0.4x for random 4 KiB
# writes. The remote volume keeps the partial parity log; Cloud__PartialParityLog=false in the environment (passed to
# the silos) makes it without, for the log's cost; Cloud__DiskTransport=grain sends the member I/O as grain calls
# instead of over the disk stream, for the transport's worth.
#   bench/hosts.sh --remote-members [--member-mib N (default 64; the volumes hold 4x that)] [--runs N (default 1: every job
#     N times per volume in the one bed, the precondition once; the ratio reported and judged is the median of the
#     runs' ratios, as bench/nbd.sh's NBD_BENCH_RUNS)]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build tests/Cloud.HostBed -c Release -v quiet -nologo >/dev/null
exec dotnet tests/Cloud.HostBed/bin/Release/net10.0/Cloud.HostBed.dll "$@"
