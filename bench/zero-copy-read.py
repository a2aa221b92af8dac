#!/usr/bin/env python3
"""Prices the two copies of an NBD read against a reply sent straight from the page cache.

A minimal NBD server (one export, one connection at a time, requests served in order on one thread) answers reads in
one of two ways:

  copy      pread the range into the server's buffer, then send header and buffer (what nbdkit and Cloud do: the
            kernel copies page cache -> buffer, then buffer -> socket)
  sendfile  send the header, then sendfile(2) the range from the file to the socket (no copy in the server: on
            loopback the socket carries references to the page-cache pages, which the client copies out)
  scratch   as sendfile, after reading the range 64 KiB at a time into one small buffer that stays in the CPU's
            cache (what a server that must look at the bytes first, say to verify their checksums, would add without
            mapping the file; the checksums' own work is not included)

Each round runs the shared seqread job (1 MiB, QD16, fio's nbd engine) against each, in rotating order, and against
`nbdkit file` on the same file, and prints each server's MiB/s and CPU per MiB. The modes share everything else, so
their differences are what the copies cost on this machine.

  bench/zero-copy-read.py [--file-mib N] [--rounds N] [--runtime S] [--cache large|small]

--cache says how the file's pages come into the page cache: large (default) reads it sequentially after writing it, so
the kernel caches it in large folios, as a file written and read in big pieces is; small drops it from the cache and
reads it back 4 KiB at a time without readahead, so every page is a folio of its own, as Cloud's member files end up
(their chunk slots are 68 KiB apart). `bench/folio-sizes.py` (root) shows which one a file got.
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO, REP_ERR_UNSUP = 1, 3, 0x80000001
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
FLAG_HAS_FLAGS, FLAG_READ_ONLY, FLAG_SEND_FLUSH = 1, 2, 4
EINVAL = 22
SCRATCH_BYTES = 64 << 10


def recv_exact(conn, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:])
        if k == 0:
            raise EOFError
        got += k
    return buf


def option_reply(conn, option, kind, data=b""):
    conn.sendall(struct.pack(">QIII", REPLY_MAGIC, option, kind, len(data)) + data)


def handshake(conn, size, tflags):
    """Fixed newstyle negotiation; returns once transmission starts."""
    conn.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, 3))  # FIXED_NEWSTYLE | NO_ZEROES
    (client_flags,) = struct.unpack(">I", recv_exact(conn, 4))
    while True:
        magic, option, length = struct.unpack(">QII", recv_exact(conn, 16))
        if magic != IHAVEOPT:
            raise ValueError("bad option magic")
        data = recv_exact(conn, length) if length else b""
        if option == OPT_EXPORT_NAME:
            conn.sendall(struct.pack(">QH", size, tflags) + (b"" if client_flags & 2 else bytes(124)))
            return
        if option in (OPT_INFO, OPT_GO):
            option_reply(conn, option, REP_INFO, struct.pack(">HQH", 0, size, tflags))
            option_reply(conn, option, REP_ACK)
            if option == OPT_GO:
                return
        elif option == OPT_ABORT:
            option_reply(conn, option, REP_ACK)
            raise EOFError
        else:
            option_reply(conn, option, REP_ERR_UNSUP)


def serve(mode, path, port):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4)
    print("ready", flush=True)
    buf = bytearray(32 << 20)
    view = memoryview(buf)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            handshake(conn, size, FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH)
            transmit(conn, fd, size, mode, view)
        except (EOFError, ConnectionError):
            pass
        finally:
            conn.close()


def transmit(conn, fd, size, mode, view):
    out = conn.fileno()
    while True:
        magic, _flags, kind, cookie, offset, length = struct.unpack(">IHHQQI", recv_exact(conn, 28))
        if magic != 0x25609513:
            raise ValueError("bad request magic")
        if kind == CMD_DISC:
            return
        ok = kind in (CMD_READ, CMD_FLUSH) and offset + length <= size and length <= len(view)
        header = struct.pack(">IIQ", 0x67446698, 0 if ok else EINVAL, cookie)
        if kind == CMD_WRITE:
            recv_exact(conn, length)  # read-only export: the payload is discarded, the write refused
        if not ok or kind != CMD_READ:
            conn.sendall(header)
        elif mode == "copy":
            n = os.preadv(fd, [view[:length]], offset)
            conn.sendmsg([header, view[:n]])
        else:
            if mode == "scratch":
                for at in range(offset, offset + length, SCRATCH_BYTES):
                    os.preadv(fd, [view[:min(SCRATCH_BYTES, offset + length - at)]], at)
            conn.send(header, socket.MSG_MORE)
            sent = 0
            while sent < length:
                sent += os.sendfile(out, fd, offset + sent, length - sent)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_fio(job, uri, workdir, name):
    out = os.path.join(workdir, name + ".json")
    with open(out, "w") as f:
        subprocess.run(["fio", "--section=seqread", "--output-format=json", job], env={**os.environ, "NBD_URI": uri},
                       stdout=f, stderr=subprocess.DEVNULL, check=True)
    text = open(out).read()
    report = json.loads(text[text.index("{"):])
    return report["jobs"][0]["read"]["bw_bytes"] / (1 << 20)


def measure(name, argv, uri, job, workdir, ready=None):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if ready:
            if proc.stdout.readline().strip() != ready:
                raise RuntimeError(f"{name} did not start")
        else:
            time.sleep(1)
        before, start = cpu_seconds(proc.pid), time.monotonic()
        mib_s = run_fio(job, uri, workdir, name)
        cpu, wall = cpu_seconds(proc.pid) - before, time.monotonic() - start
        return mib_s, cpu * 1e6 / (mib_s * wall)
    finally:
        proc.terminate()
        proc.wait()


def main():
    if sys.argv[1:2] == ["serve"]:  # the server itself, started by the rounds below
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runtime", type=int, default=10)
    ap.add_argument("--cache", choices=["large", "small"], default="large")
    a = ap.parse_args()
    for name, value, low, high in (("--file-mib", a.file_mib, 16, 65536), ("--rounds", a.rounds, 1, 100),
                                   ("--runtime", a.runtime, 1, 3600)):
        if not low <= value <= high:
            sys.exit(f"zero-copy-read.py: {name} {value} is out of range; allowed {low}-{high}")
    for tool in ("fio", "nbdkit"):
        if shutil.which(tool) is None:
            sys.exit(f"zero-copy-read.py: '{tool}' is not installed")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fio_dir = os.environ.get("FIO_DIR", os.path.join(repo, "..", "shared", "bench", "fio"))
    workdir = tempfile.mkdtemp(prefix="zero-copy-read.")
    try:
        job = os.path.join(workdir, "job.fio")
        with open(job, "w") as f:
            for part in ("engine-nbd.fio", "workload.fio"):
                f.write(open(os.path.join(fio_dir, part)).read().replace("runtime=20", f"runtime={a.runtime}"))
        data = os.path.join(workdir, "export.img")
        with open(data, "wb") as f:
            for _ in range(a.file_mib):
                f.write(os.urandom(1 << 20))
        with open(data, "rb") as f:  # the file in the page cache, as a volume's hot data is
            if a.cache == "small":
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)
                for offset in range(0, a.file_mib << 20, 4096):
                    os.pread(f.fileno(), 4096, offset)
            else:
                while f.read(8 << 20):
                    pass
        print(f"{'round':<6}{'server':<10}{'MiB/s':>10}{'server us/MiB':>15}")
        for r in range(a.rounds):
            modes = ["copy", "sendfile", "scratch"]
            modes = modes[r % 3:] + modes[:r % 3]
            for name in modes + ["nbdkit"]:
                port = free_port()
                uri = f"nbd://127.0.0.1:{port}/"
                if name == "nbdkit":
                    argv = ["nbdkit", "-f", "-r", "-i", "127.0.0.1", "-p", str(port), "file", data]
                    mib_s, us = measure(name, argv, uri, job, workdir)
                else:
                    argv = [sys.executable, os.path.abspath(__file__), "serve", name, data, str(port)]
                    mib_s, us = measure(name, argv, uri, job, workdir, ready="ready")
                print(f"{r + 1:<6}{name:<10}{mib_s:>10,.0f}{us:>15,.0f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
