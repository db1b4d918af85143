/* One of dl_swap's two libraries: SPIN_NAME (swap_spin_a or swap_spin_b, the same length,
 * so both builds have the same layout) loops for the given milliseconds. */
#include <time.h>

static volatile unsigned long sink;

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

__attribute__((noinline)) long SPIN_NAME(long ms) {
  long deadline = now_ms() + ms;
  long rounds = 0;
  while (now_ms() < deadline) {
    for (int i = 0; i < 1000; i++)
      sink += (unsigned long)i;
    rounds++;
  }
  return rounds;
}

long swap_spin(long ms) { return SPIN_NAME(ms) + 1; }
