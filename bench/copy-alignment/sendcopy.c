/* What the kernel's copy of a reply into a loopback TCP socket costs the sender, by how the reply is laid out and by
 * which core wrote its data last: CPU time per MiB of send() of 1 MiB replies (a 28-byte header, an NBD structured
 * reply's, and the data) to a receiver thread that reads and drops them. Used by bench/copy-alignment.sh; see
 * docs/BENCHMARKS.md, "The reply's send copy" (session 35).
 *
 *   sendcopy ROUNDS
 *
 * Layouts, each with the data at offsets 0, 8, ..., 56 past a 64-byte boundary: the header in front of the data in
 * one buffer and one send (Cloud's NBD server), the header sent first with MSG_MORE and the data after it (nbdkit's).
 * Locality: the data written by the sending thread just before the send (as a read from the page cache into the reply
 * buffer leaves it), or by a thread on the other core. The sender is pinned to CPU 0 for the locality test.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DATA (1 << 20)
#define HEADER 28
#define BUFFERS 16
#define SENDS 2048

static atomic_int port;
/* The filler sleeps between fills (a spinning one would take the other core from the receiver all along). */
static sem_t fill_request, fill_done;
static char *fill_target;
static int fill_value;

static double thread_cpu(void)
{
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void pin(int cpu)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void die(const char *what)
{
  fprintf(stderr, "sendcopy: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *receiver(void *unused)
{
  (void)unused;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (listener < 0 || bind(listener, (void *)&a, sizeof a) || getsockname(listener, (void *)&a, &len) ||
      listen(listener, 1))
    die("listen on 127.0.0.1");
  atomic_store(&port, ntohs(a.sin_port));
  int s = accept(listener, 0, 0);
  char *buffer = aligned_alloc(4096, DATA);
  while (recv(s, buffer, DATA, 0) > 0) {}
  return 0;
}

/* Writes the data of the next reply on the other core, as a member read finished by another thread would. */
static void *filler(void *unused)
{
  (void)unused;
  pin(1);
  for (;;) {
    while (sem_wait(&fill_request) != 0) {}
    memset(fill_target, fill_value, DATA);
    sem_post(&fill_done);
  }
  return 0;
}

static void send_all(int s, const char *p, size_t n, int flags)
{
  while (n > 0) {
    ssize_t sent = send(s, p, n, flags);
    if (sent < 0) die("send");
    p += sent;
    n -= (size_t)sent;
  }
}

int main(int argc, char **argv)
{
  int rounds = argc == 2 ? atoi(argv[1]) : 0;
  if (rounds < 1) {
    fprintf(stderr, "usage: sendcopy ROUNDS (1 or more)\n");
    return 2;
  }
  pthread_t r, f;
  sem_init(&fill_request, 0, 0);
  sem_init(&fill_done, 0, 0);
  pthread_create(&r, 0, receiver, 0);
  pthread_create(&f, 0, filler, 0);
  while (!atomic_load(&port)) usleep(1000);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atomic_load(&port)),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (s < 0 || connect(s, (void *)&a, sizeof a)) die("connect");
  size_t stride = DATA + 8192;
  char *base = aligned_alloc(4096, stride * BUFFERS);
  if (!base) die("aligned_alloc");
  memset(base, 1, stride * BUFFERS);
  char header[HEADER] = {0};

  double layout[2][8] = {{0}}, locality[2] = {0};
  int filled = 0;
  for (int round = 0; round < rounds; round++) {
    for (int separate = 0; separate < 2; separate++)
      for (int k = 0; k < 8; k++) {
        double cpu = 0;
        for (int i = 0; i < SENDS; i++) {
          char *data = base + (size_t)(i % BUFFERS) * stride + 4096 + 8 * k;
          memset(data, i, DATA);
          double start = thread_cpu();
          if (separate) {
            send_all(s, header, HEADER, MSG_MORE);
            send_all(s, data, DATA, 0);
          } else {
            send_all(s, data - HEADER, DATA + HEADER, 0);
          }
          cpu += thread_cpu() - start;
        }
        layout[separate][k] += cpu * 1e6 / SENDS;
      }
    pin(0);
    for (int other = 0; other < 2; other++) {
      double cpu = 0;
      for (int i = 0; i < SENDS; i++) {
        char *data = base + (size_t)(i % BUFFERS) * stride + 4096;
        if (other) {
          fill_target = data;
          fill_value = ++filled;
          sem_post(&fill_request);
          while (sem_wait(&fill_done) != 0) {}
        } else {
          memset(data, i, DATA);
        }
        double start = thread_cpu();
        send_all(s, data - HEADER, DATA + HEADER, 0);
        cpu += thread_cpu() - start;
      }
      locality[other] += cpu * 1e6 / SENDS;
    }
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++) CPU_SET(c, &all);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
  }
  printf("send of 1 MiB replies over loopback TCP, %d rounds: sender CPU us per MiB (and ratio to the header in front at offset 0)\n", rounds);
  printf("data offset   header in front, one send   header sent first (MSG_MORE)\n");
  for (int k = 0; k < 8; k++)
    printf("%11d   %10.1f (%4.2fx)          %10.1f (%4.2fx)\n", 8 * k, layout[0][k] / rounds,
           layout[0][k] / layout[0][0], layout[1][k] / rounds, layout[1][k] / layout[0][0]);
  printf("data written by the sending core %.1f, by the other core %.1f (%.2fx)\n", locality[0] / rounds,
         locality[1] / rounds, locality[1] / locality[0]);
  return 0;
}
