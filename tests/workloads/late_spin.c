/* A thread "late" that sleeps <delay_ms>, spins in late_spin_loop for <spin_ms>, then sleeps
 * until the harness ends the process: a thread that starts spinning after probe watch
 * started, and stops while it still watches. Usage: late_spin <delay_ms> <spin_ms>. */
#include "common.h"

#include <time.h>

static volatile unsigned long sink;
static long delay_ms, spin_ms;

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

__attribute__((noinline)) static void late_spin_loop(long deadline) {
  while (now_ns() < deadline)
    for (int i = 0; i < 1000; i++)
      sink += (unsigned long)i;
}

static void *late(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "late");
  announce_ready();
  struct timespec delay = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
  nanosleep(&delay, NULL);
  late_spin_loop(now_ns() + spin_ms * 1000000L);
  for (;;)
    pause();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s <delay_ms> <spin_ms>\n", argv[0]);
    return 2;
  }
  delay_ms = atol(argv[1]);
  spin_ms = atol(argv[2]);
  start_thread(late, NULL);
  print_ready();
  wait_stdin_eof();
}
