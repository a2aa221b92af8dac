/* raid5floor: an nbdkit plugin that does the per-byte work of Cloud's RAID-5 engine and nothing else, to measure
 * what that work costs in nbdkit's server (blocking threads, one buffer per request, no cluster) on the same machine
 * as Cloud and `nbdkit file`. `bench/nbd.sh` runs it as a third target with NBD_BENCH_FLOOR=1.
 *
 * The work per byte is Cloud's (docs/FORMAT.md): five member files, left-symmetric RAID-5, 64 KiB chunks, each chunk
 * followed on its member by a 4 KiB metadata sector of 16-byte entries (write timestamp, XXH3-64 of the 4 KiB block);
 * the data region at 1 MiB. A write of whole stripes computes each stripe's parity (ISA-L's xor_gen), checksums every
 * data and parity block, and writes each member's part of the request in one gathered write (chunks and metadata
 * sectors back to back), as Cloud's run write does. A smaller write reads the old data, parity and metadata it
 * changes and writes them back (read-modify-write) under a stripe lock. A read reads the data rows and their metadata
 * sectors and verifies every block that was ever written. There are no superblocks, write intents or timestamps'
 * ordering across hosts: the figure is a floor for the engine's work, not a volume anyone should keep data on.
 *
 *   nbdkit -f -i 127.0.0.1 -p PORT ./raid5floor.so dir=DIR member-mib=N [layout=slots|contiguous|md] [checksums=yes|no]
 *
 * Requests must be 4 KiB-aligned (fio's shared jobs are); anything else is refused with EINVAL. */
#define NBDKIT_API_VERSION 2
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <isa-l/raid.h>
#include <nbdkit-plugin.h>
/* XXH3 inlined from the header, so that it is compiled for this machine's vectors (AVX2 with -march=native), as .NET's
 * XxHash3 is at run time; Debian's libxxhash is built for plain x86-64 (SSE2) and hashes at about half the speed. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

enum { MEMBERS = 5, DATA = 4, BLOCK = 4096, CHUNK = 65536, ROWS = CHUNK / BLOCK, META = 4096,
       STRIDE = CHUNK + META, STRIPE_DATA = DATA * CHUNK, LOCKS = 1024, MAX_IOV = 1024 };
static const int64_t DATA_OFFSET = 1 << 20;

static const char *dir;
/* slots (Cloud's format: each chunk followed by its metadata sector) or contiguous (each member's chunks back to back
 * from the data offset, its metadata sectors in a region after them: issue 18's "data chunks contiguous" layout). */
static int contiguous;
/* layout=md: contiguous chunks and no metadata at all (no checksums, no metadata sectors), as Linux md's RAID-5 keeps. */
static int nometa;
/* yes (Cloud's work) or no: metadata sectors still written, but every entry 0 and nothing hashed or verified; what
 * RAID-5 without checksums would cost. */
static int checksums = 1;
static int64_t member_mib;
static int64_t stripes;
static int fds[MEMBERS];
static pthread_mutex_t locks[LOCKS];
static atomic_llong clock_ticks = 1;

static int raid5_config(const char *key, const char *value)
{
  if (strcmp(key, "dir") == 0) dir = value;
  else if (strcmp(key, "member-mib") == 0) {
    char *end;
    member_mib = strtoll(value, &end, 10);
    if (*end || member_mib < 1 || member_mib > 1 << 20) {
      nbdkit_error("member-mib '%s' is not allowed; use a whole number of MiB from 1 to 1048576", value);
      return -1;
    }
  }
  else if (strcmp(key, "layout") == 0) {
    if (strcmp(value, "slots") == 0) contiguous = 0;
    else if (strcmp(value, "contiguous") == 0) contiguous = 1;
    else if (strcmp(value, "md") == 0) contiguous = nometa = 1;
    else { nbdkit_error("layout '%s' is not allowed; use slots, contiguous or md", value); return -1; }
  }
  else if (strcmp(key, "checksums") == 0) {
    if (strcmp(value, "yes") == 0) checksums = 1;
    else if (strcmp(value, "no") == 0) checksums = 0;
    else { nbdkit_error("checksums '%s' is not allowed; use yes or no", value); return -1; }
  }
  else {
    nbdkit_error("unknown parameter '%s'; use dir=DIR member-mib=N [layout=slots|contiguous|md] [checksums=yes|no]", key);
    return -1;
  }
  return 0;
}

static int raid5_config_complete(void)
{
  if (!dir || !member_mib) { nbdkit_error("dir= and member-mib= are both needed"); return -1; }
  if (nometa) checksums = 0;
  stripes = member_mib * (1 << 20) / CHUNK;
  for (int m = 0; m < MEMBERS; m++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/member%d", dir, m);
    fds[m] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fds[m] < 0 || ftruncate(fds[m], DATA_OFFSET + stripes * (CHUNK + META)) < 0) {
      nbdkit_error("%s: %m", path);
      return -1;
    }
  }
  for (int i = 0; i < LOCKS; i++) pthread_mutex_init(&locks[i], NULL);
  return 0;
}

static void *raid5_open(int readonly) { (void) readonly; return NBDKIT_HANDLE_NOT_NEEDED; }
static int64_t raid5_get_size(void *h) { (void) h; return stripes * STRIPE_DATA; }
static int raid5_can_multi_conn(void *h) { (void) h; return 1; }
static int raid5_can_fua(void *h) { (void) h; return NBDKIT_FUA_EMULATE; }

static int raid5_flush(void *h, uint32_t flags)
{
  (void) h; (void) flags;
  for (int m = 0; m < MEMBERS; m++)
    if (fdatasync(fds[m]) < 0) { nbdkit_error("fdatasync: %m"); return -1; }
  return 0;
}

static int parity_member(int64_t s) { return MEMBERS - 1 - (int) (s % MEMBERS); }
static int data_member(int64_t s, int d) { return (parity_member(s) + 1 + d) % MEMBERS; }
/* The data chunk index member m holds in stripe s (m not its parity member). */
static int data_index(int64_t s, int m) { return (m - parity_member(s) - 1 + MEMBERS) % MEMBERS; }
/* Where stripe s's chunk and its metadata sector sit on every member. */
static int64_t slot(int64_t s) { return DATA_OFFSET + s * (contiguous ? CHUNK : STRIDE); }
static int64_t meta_at(int64_t s) { return contiguous ? DATA_OFFSET + stripes * CHUNK + s * META : slot(s) + CHUNK; }
/* One I/O for rows [f, ROWS) and the metadata sector when they are adjacent on the member. */
static int adjacent(int e) { return !contiguous && e == ROWS; }

static void put_entry(uint8_t *meta, int row, int64_t ts, const uint8_t *block)
{
  if (!checksums) return;
  uint64_t h = XXH3_64bits(block, BLOCK);
  memcpy(meta + 16 * row, &ts, 8);
  memcpy(meta + 16 * row + 8, &h, 8);
}

static int verify(const uint8_t *meta, int row, const uint8_t *block)
{
  int64_t ts; uint64_t h;
  if (!checksums) return 1;
  memcpy(&ts, meta + 16 * row, 8);
  memcpy(&h, meta + 16 * row + 8, 8);
  return (ts == 0 && h == 0) || XXH3_64bits(block, BLOCK) == h;
}

static void xor_into(uint8_t *dest, uint8_t *const src[DATA], size_t len)
{
  void *array[DATA + 1];
  int aligned = ((uintptr_t) dest & 31) == 0;
  for (int d = 0; d < DATA; d++) { array[d] = src[d]; aligned &= ((uintptr_t) src[d] & 31) == 0; }
  array[DATA] = dest;
  if (aligned && xor_gen(DATA + 1, (int) len, array) == 0) return;
  for (size_t i = 0; i < len; i++) dest[i] = src[0][i] ^ src[1][i] ^ src[2][i] ^ src[3][i];
}

static int full_io(int write, int fd, struct iovec *iov, int n, int64_t off)
{
  while (n > 0) {
    ssize_t r = write ? pwritev(fd, iov, n < MAX_IOV ? n : MAX_IOV, off)
                      : preadv(fd, iov, n < MAX_IOV ? n : MAX_IOV, off);
    if (r < 0) { if (errno == EINTR) continue; nbdkit_error("%s: %m", write ? "pwritev" : "preadv"); return -1; }
    if (r == 0) { nbdkit_error("short read"); errno = EIO; return -1; }
    off += r;
    while (n > 0 && (size_t) r >= iov->iov_len) { r -= iov->iov_len; iov++; n--; }
    if (n > 0) { iov->iov_base = (uint8_t *) iov->iov_base + r; iov->iov_len -= r; }
  }
  return 0;
}

/* A metadata sector's I/O; none in layout md. */
static int meta_io(int write, int fd, struct iovec *iov, int n, int64_t off)
{
  return nometa ? 0 : full_io(write, fd, iov, n, off);
}

/* Per thread scratch, grown as needed: parity chunks and metadata sectors of a run of stripes. */
static __thread uint8_t *scratch;
static __thread size_t scratch_bytes;
static __thread struct iovec *iovs;
static __thread size_t iov_count;

static uint8_t *get_scratch(size_t bytes)
{
  if (bytes > scratch_bytes) {
    free(scratch);
    if (posix_memalign((void **) &scratch, 4096, bytes) != 0) { scratch = NULL; scratch_bytes = 0; return NULL; }
    scratch_bytes = bytes;
  }
  return scratch;
}

static struct iovec *get_iovs(size_t n)
{
  if (n > iov_count) {
    free(iovs);
    iovs = malloc(n * sizeof *iovs);
    iov_count = iovs ? n : 0;
  }
  return iovs;
}

/* Whole stripes [s0, s0 + n) from buf: parity and checksums, then each member's slots in one gathered write. */
static int write_run(const uint8_t *buf, int64_t s0, int64_t n)
{
  int64_t ts = atomic_fetch_add(&clock_ticks, 1);
  uint8_t *par = get_scratch(n * CHUNK + n * MEMBERS * META);
  struct iovec *iov = get_iovs(2 * n);
  if (!par || !iov) { errno = ENOMEM; return -1; }
  uint8_t *metas = par + n * CHUNK;
  memset(metas, 0, n * MEMBERS * META);
  for (int64_t i = 0; i < n; i++) {
    uint8_t *src[DATA];
    for (int d = 0; d < DATA; d++) src[d] = (uint8_t *) buf + i * STRIPE_DATA + d * CHUNK;
    xor_into(par + i * CHUNK, src, CHUNK);
    for (int d = 0; d < DATA; d++)
      for (int r = 0; r < ROWS; r++)
        put_entry(metas + (i * MEMBERS + data_member(s0 + i, d)) * META, r, ts, src[d] + r * BLOCK);
    for (int r = 0; r < ROWS; r++)
      put_entry(metas + (i * MEMBERS + parity_member(s0 + i)) * META, r, ts, par + i * CHUNK + r * BLOCK);
  }
  for (int m = 0; m < MEMBERS; m++) {
    for (int64_t i = 0; i < n; i++) {
      int64_t s = s0 + i;
      int p = parity_member(s);
      uint8_t *chunk = m == p ? par + i * CHUNK
                              : (uint8_t *) buf + i * STRIPE_DATA + data_index(s, m) * CHUNK;
      if (contiguous) {
        iov[i] = (struct iovec) { chunk, CHUNK };
        iov[n + i] = (struct iovec) { metas + (i * MEMBERS + m) * META, META };
      } else {
        iov[2 * i] = (struct iovec) { chunk, CHUNK };
        iov[2 * i + 1] = (struct iovec) { metas + (i * MEMBERS + m) * META, META };
      }
    }
    if (contiguous) {
      if (full_io(1, fds[m], iov, (int) n, slot(s0)) < 0 || meta_io(1, fds[m], iov + n, (int) n, meta_at(s0)) < 0)
        return -1;
    } else if (full_io(1, fds[m], iov, (int) (2 * n), slot(s0)) < 0) return -1;
  }
  return 0;
}

/* Part of one stripe: [in, in + len) of its data, read-modify-write under the stripe's lock. */
static int write_partial(const uint8_t *buf, int64_t s, int in, int len)
{
  int p = parity_member(s);
  int r0 = ROWS, r1 = 0;
  for (int d = 0; d < DATA; d++) {
    int a = in > d * CHUNK ? in : d * CHUNK, b = in + len < (d + 1) * CHUNK ? in + len : (d + 1) * CHUNK;
    if (a < b) { int f = (a - d * CHUNK) / BLOCK, e = (b - d * CHUNK) / BLOCK; if (f < r0) r0 = f; if (e > r1) r1 = e; }
  }
  uint8_t *old = get_scratch((size_t) (DATA + 1) * (CHUNK + META));
  if (!old) { errno = ENOMEM; return -1; }
  uint8_t *parity = old + DATA * CHUNK, *metas = parity + CHUNK; /* metas: one per member */
  pthread_mutex_t *lock = &locks[s % LOCKS];
  pthread_mutex_lock(lock);
  int rc = -1;
  int64_t ts = atomic_fetch_add(&clock_ticks, 1);
  if (pread(fds[p], parity + r0 * BLOCK, (r1 - r0) * BLOCK, slot(s) + r0 * BLOCK) != (r1 - r0) * BLOCK
      || meta_io(0, fds[p], &(struct iovec) { metas + p * META, META }, 1, meta_at(s)) < 0) goto out;
  for (int d = 0; d < DATA; d++) {
    int a = in > d * CHUNK ? in : d * CHUNK, b = in + len < (d + 1) * CHUNK ? in + len : (d + 1) * CHUNK;
    if (a >= b) continue;
    int m = data_member(s, d), f = (a - d * CHUNK) / BLOCK, e = (b - d * CHUNK) / BLOCK;
    uint8_t *o = old + d * CHUNK;
    const uint8_t *nw = buf + (a - in);
    struct iovec rd[2] = { { o + f * BLOCK, (size_t) (e - f) * BLOCK }, { metas + m * META, META } };
    if (adjacent(e)) { if (full_io(0, fds[m], rd, 2, slot(s) + f * BLOCK) < 0) goto out; }
    else if (full_io(0, fds[m], rd, 1, slot(s) + f * BLOCK) < 0 || meta_io(0, fds[m], rd + 1, 1, meta_at(s)) < 0)
      goto out;
    for (int i = 0; i < (e - f) * BLOCK; i++) parity[f * BLOCK + i] ^= o[f * BLOCK + i] ^ nw[i];
    for (int r = f; r < e; r++) put_entry(metas + m * META, r, ts, nw + (r - f) * BLOCK);
    struct iovec wr[2] = { { (void *) nw, (size_t) (e - f) * BLOCK }, { metas + m * META, META } };
    if (adjacent(e)) { if (full_io(1, fds[m], wr, 2, slot(s) + f * BLOCK) < 0) goto out; }
    else if (full_io(1, fds[m], wr, 1, slot(s) + f * BLOCK) < 0 || meta_io(1, fds[m], wr + 1, 1, meta_at(s)) < 0)
      goto out;
  }
  for (int r = r0; r < r1; r++) put_entry(metas + p * META, r, ts, parity + r * BLOCK);
  struct iovec pw[2] = { { parity + r0 * BLOCK, (size_t) (r1 - r0) * BLOCK }, { metas + p * META, META } };
  if (adjacent(r1)) rc = full_io(1, fds[p], pw, 2, slot(s) + r0 * BLOCK);
  else rc = full_io(1, fds[p], pw, 1, slot(s) + r0 * BLOCK) < 0 ? -1 : meta_io(1, fds[p], pw + 1, 1, meta_at(s));
out:
  if (rc < 0 && errno == 0) errno = EIO;
  pthread_mutex_unlock(lock);
  return rc;
}

/* FUA is emulated (raid5_can_fua): nbdkit flushes after such a write itself, so flags never carry it here. */
static int raid5_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
  (void) h; (void) flags;
  if (offset % BLOCK || count % BLOCK) {
    nbdkit_error("offset %llu and length %u must be multiples of 4096", (unsigned long long) offset, count);
    errno = EINVAL;
    return -1;
  }
  const uint8_t *p = buf;
  while (count > 0) {
    int64_t s = offset / STRIPE_DATA;
    int in = (int) (offset - s * STRIPE_DATA);
    if (in == 0 && count >= STRIPE_DATA) {
      int64_t n = count / STRIPE_DATA;
      if (write_run(p, s, n) < 0) return -1;
      p += n * STRIPE_DATA; offset += n * STRIPE_DATA; count -= n * STRIPE_DATA;
      continue;
    }
    int len = STRIPE_DATA - in < (int64_t) count ? STRIPE_DATA - in : (int) count;
    if (write_partial(p, s, in, len) < 0) return -1;
    p += len; offset += len; count -= len;
  }
  return 0;
}

/* Reads each member's part with one gathered read per contiguous range (rows, then the chunk's metadata sector when
 * the rows run to the chunk's end), then verifies every block. */
static int raid5_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
  (void) h; (void) flags;
  if (offset % BLOCK || count % BLOCK) {
    nbdkit_error("offset %llu and length %u must be multiples of 4096", (unsigned long long) offset, count);
    errno = EINVAL;
    return -1;
  }
  int64_t s0 = offset / STRIPE_DATA, s1 = (offset + count - 1) / STRIPE_DATA + 1, n = s1 - s0;
  uint8_t *metas = get_scratch(n * DATA * META);
  struct iovec *iov = get_iovs(2 * n);
  if (!metas || !iov) { errno = ENOMEM; return -1; }
  for (int m = 0; m < MEMBERS; m++) {
    int k = 0;
    int64_t start = -1, next = -1;
    for (int64_t s = s0; s < s1; s++) {
      int p = parity_member(s);
      if (m == p) continue;
      int d = data_index(s, m);
      int64_t a = s * STRIPE_DATA + d * CHUNK, b = a + CHUNK;
      if (a < (int64_t) offset) a = offset;
      if (b > (int64_t) (offset + count)) b = offset + count;
      if (a >= b) continue;
      int f = (int) (a - s * STRIPE_DATA - d * CHUNK) / BLOCK, e = (int) (b - s * STRIPE_DATA - d * CHUNK) / BLOCK;
      int64_t here = slot(s) + f * BLOCK;
      if (k > 0 && here != next) {
        if (full_io(0, fds[m], iov, k, start) < 0) return -1;
        k = 0;
      }
      if (k == 0) start = here;
      iov[k++] = (struct iovec) { (uint8_t *) buf + (a - offset), (size_t) (e - f) * BLOCK };
      next = here + (e - f) * BLOCK;
      uint8_t *meta = metas + ((s - s0) * DATA + d) * META;
      if (adjacent(e)) { iov[k++] = (struct iovec) { meta, META }; next += META; }
      else if (contiguous) {
        /* The metadata sectors of consecutive stripes are adjacent too: gathered after the data, below. */
        if (e != ROWS) { if (full_io(0, fds[m], iov, k, start) < 0) return -1; k = 0; }
      } else {
        if (full_io(0, fds[m], iov, k, start) < 0) return -1;
        struct iovec mv = { meta, META };
        if (full_io(0, fds[m], &mv, 1, meta_at(s)) < 0) return -1;
        k = 0;
      }
    }
    if (k > 0 && full_io(0, fds[m], iov, k, start) < 0) return -1;
    if (contiguous && !nometa) {
      /* This member's metadata sectors, one per stripe it holds data of, in one gathered read per adjacent run. */
      k = 0; next = -1;
      for (int64_t s = s0; s < s1; s++) {
        int p = parity_member(s);
        if (m == p) continue;
        int d = data_index(s, m);
        int64_t a = s * STRIPE_DATA + d * CHUNK;
        if (a + CHUNK <= (int64_t) offset || a >= (int64_t) (offset + count)) continue;
        if (k > 0 && meta_at(s) != next) { if (full_io(0, fds[m], iov, k, start) < 0) return -1; k = 0; }
        if (k == 0) start = meta_at(s);
        iov[k++] = (struct iovec) { metas + ((s - s0) * DATA + d) * META, META };
        next = meta_at(s) + META;
      }
      if (k > 0 && full_io(0, fds[m], iov, k, start) < 0) return -1;
    }
  }
  for (int64_t s = s0; s < s1; s++)
    for (int d = 0; d < DATA; d++) {
      int64_t a = s * STRIPE_DATA + d * CHUNK, b = a + CHUNK;
      if (a < (int64_t) offset) a = offset;
      if (b > (int64_t) (offset + count)) b = offset + count;
      for (int64_t x = a; x < b; x += BLOCK) {
        int row = (int) (x - s * STRIPE_DATA - d * CHUNK) / BLOCK;
        if (!verify(metas + ((s - s0) * DATA + d) * META, row, (uint8_t *) buf + (x - offset))) {
          nbdkit_error("stripe %lld chunk %d block %d does not match its checksum", (long long) s, d, row);
          errno = EIO;
          return -1;
        }
      }
    }
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name = "raid5floor",
  .version = "1.0",
  .longname = "RAID-5 4+1 with Cloud's per-byte work, as a floor for benchmarks",
  .config = raid5_config,
  .config_complete = raid5_config_complete,
  .config_help = "dir=DIR member-mib=N [layout=slots|contiguous|md] [checksums=yes|no]   five member files in DIR, N MiB of chunks each",
  .open = raid5_open,
  .get_size = raid5_get_size,
  .can_multi_conn = raid5_can_multi_conn,
  .can_fua = raid5_can_fua,
  .pread = raid5_pread,
  .pwrite = raid5_pwrite,
  .flush = raid5_flush,
};

NBDKIT_REGISTER_PLUGIN(plugin)
