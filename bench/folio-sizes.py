#!/usr/bin/env python3
"""How the page cache holds a file: the share of its pages in folios of each size.

    bench/folio-sizes.py FILE...        (root: /proc/kpageflags and page frame numbers need CAP_SYS_ADMIN)

Maps each file privately, touches every page (a read fault maps the cached folio without changing it; a page that is
not cached is read in, so run it on files the page cache already holds), then reads each page's frame number from
/proc/self/pagemap and its flags from /proc/kpageflags: a compound head and the tails after it are one folio.
Used for BENCHMARKS.md, "The sequential write's last levers, priced directly" (session 30).
"""
import collections
import ctypes
import mmap
import os
import struct
import sys

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL = 1 << 15, 1 << 16
PFN_MASK, PAGE_PRESENT = (1 << 55) - 1, 1 << 63


def folio_pages(path):
    """Counter: folio size in pages -> number of folios of that size, over the file's whole pages."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pages = os.fstat(fd).st_size // PAGE_BYTES
        if pages == 0:
            return collections.Counter()
        # Private and writable only so that ctypes can take its address; nothing is written.
        area = mmap.mmap(fd, pages * PAGE_BYTES, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    view = memoryview(area)
    try:
        for i in range(pages):
            view[i * PAGE_BYTES]  # fault the page in
        anchor = ctypes.c_char.from_buffer(area)
        address = ctypes.addressof(anchor)
        del anchor  # the mapping stays; only the export that would keep it from closing goes
        with open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kpageflags:
            pagemap.seek(address // PAGE_BYTES * 8)
            entries = pagemap.read(8 * pages)
            sizes, run = collections.Counter(), 0
            for i in range(pages):
                entry = struct.unpack_from("<Q", entries, i * 8)[0]
                if not entry & PAGE_PRESENT:
                    continue
                kpageflags.seek((entry & PFN_MASK) * 8)
                flags = struct.unpack("<Q", kpageflags.read(8))[0]
                if flags & KPF_COMPOUND_TAIL:
                    run += 1
                    continue
                if run:
                    sizes[run] += 1
                run = 1 if flags & KPF_COMPOUND_HEAD else 0
                if not run:
                    sizes[1] += 1
            if run:
                sizes[run] += 1
        return sizes
    finally:
        view.release()
        area.close()


def main(paths):
    if not paths:
        print("folio-sizes.py: name one or more files, e.g. bench/folio-sizes.py /path/to/disk0.img", file=sys.stderr)
        return 2
    for path in paths:
        if not os.path.isfile(path):
            print(f"folio-sizes.py: '{path}' is not a regular file", file=sys.stderr)
            return 2
    try:
        for path in paths:
            sizes = folio_pages(path)
            total = sum(pages * count for pages, count in sizes.items())
            if total == 0:
                print(f"{path}: no whole page to look at (the file is shorter than {PAGE_BYTES} bytes)")
                continue
            shares = " ".join(
                f"{pages * PAGE_BYTES // 1024} KiB {pages * count * 100 / total:.0f} %"
                for pages, count in sorted(sizes.items()))
            print(f"{path}: {total} pages: {shares}")
    except PermissionError as e:
        print(f"folio-sizes.py: {e.filename}: permission denied; run as root", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
