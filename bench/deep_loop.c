/* cpu_loop's xorshift steps, 30 calls deep, built with -fomit-frame-pointer (see
 * xtask/src/bench/plan.rs): every sample has a long native stack that only the `.eh_frame`
 * tables unwind, so this is the case where table unwinding costs most per sample. */
#include "workload.h"

/* As in cpu_loop: one chunk is ~1 ms of work. */
#define STEPS_PER_CHUNK 1000000UL
/* Calls between chunk() and the loop; with main, run_for's caller chain and the C library's
 * start-up, a sample's user stack is ~34 frames. */
#define DEPTH 30

static volatile unsigned long sink;
/* A store after each call keeps it from being a tail call, which would leave no frame. */
static volatile int depth_reached;

static __attribute__((noinline)) void steps(void) {
  unsigned long x = sink | 1;
  for (unsigned long i = 0; i < STEPS_PER_CHUNK; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  sink = x;
}

static __attribute__((noinline)) void descend(int depth) {
  if (depth == 0)
    steps();
  else
    descend(depth - 1);
  depth_reached = depth;
}

static void chunk(void) { descend(DEPTH); }

int main(int argc, char **argv) {
  return run_for(parse_secs(argc, argv), chunk, STEPS_PER_CHUNK);
}
