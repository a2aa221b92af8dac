/* What the kernel's copies between user memory and the page cache cost, by where the user buffer starts within a
 * 64-byte cache line: CPU time per MiB of pwrite from, and pread into, buffers at offsets 0, 8, ..., 56 past a
 * boundary, over a file that stays cached. Used by bench/copy-alignment.sh; see docs/BENCHMARKS.md, "Buffers on
 * cache-line boundaries".
 *
 *   copyalign FILE IO_KIB BUFFERS ROUNDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (256L << 20)
#define PASSES 8

static double cpu_seconds(void)
{
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void io_or_die(ssize_t n, size_t want, const char *what)
{
  if (n != (ssize_t)want) {
    fprintf(stderr, "copyalign: %s returned %zd of %zu bytes: %s\n", what, n, want, strerror(errno));
    exit(1);
  }
}

/* CPU microseconds per MiB of one pass kind over the whole file, buffers used in turn, each at offset `skew`. */
static double run(int fd, char *base, size_t io, int buffers, size_t stride, int skew, int writing)
{
  double start = cpu_seconds();
  long bytes = 0;
  int i = 0;
  for (int pass = 0; pass < PASSES; pass++)
    for (off_t at = 0; at + (off_t)io <= FILE_BYTES; at += io, i++) {
      char *buf = base + (size_t)(i % buffers) * stride + skew;
      io_or_die(writing ? pwrite(fd, buf, io, at) : pread(fd, buf, io, at), io, writing ? "pwrite" : "pread");
      bytes += io;
    }
  return (cpu_seconds() - start) * 1e6 / (bytes / 1048576.0);
}

int main(int argc, char **argv)
{
  if (argc != 5) {
    fprintf(stderr, "usage: copyalign FILE IO_KIB BUFFERS ROUNDS\n");
    return 2;
  }
  size_t io = (size_t)atol(argv[2]) << 10;
  int buffers = atoi(argv[3]), rounds = atoi(argv[4]);
  if (io == 0 || io > (64 << 20) || buffers < 1 || buffers > 1024 || rounds < 1) {
    fprintf(stderr, "copyalign: IO_KIB 1..65536, BUFFERS 1..1024, ROUNDS 1 or more\n");
    return 2;
  }
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) { fprintf(stderr, "copyalign: %s: %s\n", argv[1], strerror(errno)); return 1; }
  size_t stride = io + 4096;
  char *base = aligned_alloc(4096, stride * buffers);
  if (!base) { fprintf(stderr, "copyalign: out of memory\n"); return 1; }
  memset(base, 0x5a, stride * buffers);
  for (off_t at = 0; at < FILE_BYTES; at += io) io_or_die(pwrite(fd, base, io, at), io, "pwrite");

  double w[8] = {0}, r[8] = {0};
  for (int round = 0; round < rounds; round++)
    for (int k = 0; k < 8; k++) {  /* offsets interleaved, so drift in the machine touches them alike */
      w[k] += run(fd, base, io, buffers, stride, 8 * k, 1);
      r[k] += run(fd, base, io, buffers, stride, 8 * k, 0);
    }
  printf("%zu KiB per call, %d buffers, %d rounds: CPU us per MiB (and ratio to offset 0)\n", io >> 10, buffers, rounds);
  printf("offset   pwrite from buffer    pread into buffer\n");
  for (int k = 0; k < 8; k++)
    printf("%6d   %8.1f (%4.2fx)       %8.1f (%4.2fx)\n", 8 * k, w[k] / rounds, w[k] / w[0], r[k] / rounds, r[k] / r[0]);
  close(fd);
  unlink(argv[1]);
  free(base);
  return 0;
}
