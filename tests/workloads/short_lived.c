/* A thread "shortlived" that sleeps argv[2] ms (default 0), then spins for argv[1] ms of
 * its own CPU time, after which the whole process exits by itself (_exit) — for "thread
 * exits mid-window". The delay lets the spin start after probe has attached, so the
 * observed CPU time does not depend on how long probe takes to start. Measuring CPU time
 * (not wall time) keeps the spun amount fixed when other processes compete for the CPU.
 * Until it exits, stdin EOF also ends the process, so the harness can always clean up. */
#include "common.h"

#include <time.h>

static volatile unsigned long sink;

struct plan {
  long delay_ms;
  long spin_ms;
};

static long thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

__attribute__((noinline)) static void spin_for(long cpu_ns) {
  long end = thread_cpu_ns() + cpu_ns;
  while (thread_cpu_ns() < end)
    for (int i = 0; i < 1000; i++)
      sink += (unsigned long)i;
}

static void *shortlived(void *arg) {
  const struct plan *plan = arg;
  pthread_setname_np(pthread_self(), "shortlived");
  announce_ready();
  struct timespec delay = {.tv_sec = plan->delay_ms / 1000,
                           .tv_nsec = (plan->delay_ms % 1000) * 1000000L};
  nanosleep(&delay, NULL);
  spin_for(plan->spin_ms * 1000000L);
  _exit(0);
  return NULL;
}

int main(int argc, char **argv) {
  static struct plan plan;
  if (argc < 2) {
    fprintf(stderr, "usage: short_lived <spin-ms> [<delay-ms>]\n");
    return 2;
  }
  plan.spin_ms = atol(argv[1]);
  plan.delay_ms = argc > 2 ? atol(argv[2]) : 0;
  start_thread(shortlived, &plan);
  print_ready();
  wait_stdin_eof();
}
