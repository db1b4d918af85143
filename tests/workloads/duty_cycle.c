/* A thread "duty" that spins for ~10 ms of every 20 ms period and sleeps the rest: ~50%
 * of one CPU, for the --threshold boundary tests. Periods are on an absolute clock so the
 * share does not drift with scheduling delays. */
#include "common.h"

#include <time.h>

#define PERIOD_NS 20000000L
#define BUSY_NS 10000000L

static volatile unsigned long sink;

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

__attribute__((noinline)) static void busy_until(long deadline) {
  while (now_ns() < deadline)
    for (int i = 0; i < 100; i++)
      sink += (unsigned long)i;
}

static void *duty(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "duty");
  announce_ready();
  long start = now_ns();
  for (long period = 0;; period++) {
    long begin = start + period * PERIOD_NS;
    busy_until(begin + BUSY_NS);
    long next = begin + PERIOD_NS;
    struct timespec ts = {.tv_sec = next / 1000000000L, .tv_nsec = next % 1000000000L};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
  }
  return NULL;
}

int main(void) {
  start_thread(duty, NULL);
  print_ready();
  wait_stdin_eof();
}
