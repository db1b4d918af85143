/* A CPU-bound loop with no syscalls: xorshift64 steps, which the compiler cannot fold into
 * a closed form. Under an observer it only loses what sampling interrupts take. */
#include "workload.h"

/* One chunk is ~1 ms of work, so the clock is read ~1000 times a second. */
#define STEPS_PER_CHUNK 1000000UL

static volatile unsigned long sink;

static void chunk(void) {
  unsigned long x = sink | 1;
  for (unsigned long i = 0; i < STEPS_PER_CHUNK; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  sink = x;
}

int main(int argc, char **argv) {
  return run_for(parse_secs(argc, argv), chunk, STEPS_PER_CHUNK);
}
