/* A thread "deep" spinning at the bottom of five nested calls: deep_thread -> level1 ->
 * level2 -> level3 -> level4 -> level5, level5 the spinning leaf. Built twice (see
 * tests/src/workload.rs): with the workloads' usual flags (frame pointers everywhere) and
 * as "deep_omit_fp_nofp" with -O2 -fomit-frame-pointer -momit-leaf-frame-pointer, where no
 * level keeps a frame pointer and only the .eh_frame tables describe the frames.
 *
 * Every call is followed by work on a volatile, so no call is a tail call (a jump that
 * would leave its caller out of the stack), and each level does different work, so no
 * compiler folds two of them into one; noclone keeps gcc from renaming them
 * (level3.constprop.0). */
#include "common.h"

#if defined(__clang__)
#define LEVEL __attribute__((noinline))
#else
#define LEVEL __attribute__((noinline, noclone))
#endif

static volatile unsigned long sink;
/* Never set: keeps level5 from being noreturn, so every call has code after it. */
static volatile int stop;

/* The volatile local gives the leaf a stack slot, hence a frame in the frame-pointer build
 * (gcc 12 omits the frame of a leaf without one, see spin_loop.c). */
LEVEL void level5(void) {
  volatile unsigned long local = 0;
  while (!stop) {
    for (int i = 0; i < 1000; i++)
      local += (unsigned long)i;
  }
  sink += local;
}

LEVEL void level4(void) {
  level5();
  sink += 4;
}

LEVEL void level3(void) {
  level4();
  sink ^= 3;
}

LEVEL void level2(void) {
  level3();
  sink -= 2;
}

LEVEL void level1(void) {
  level2();
  sink |= 1;
}

static void *deep_thread(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "deep");
  announce_ready();
  level1();
  sink += 5;
  return NULL;
}

int main(void) {
  start_thread(deep_thread, NULL);
  print_ready();
  wait_stdin_eof();
}
