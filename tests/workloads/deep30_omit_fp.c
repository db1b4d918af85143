/* A thread "deep30" spinning at the bottom of 30 nested calls: deep30_thread -> level1 ->
 * level2 -> ... -> level30, level30 the spinning leaf. For the benchmarks of table unwinding,
 * built with -O2 -fomit-frame-pointer -momit-leaf-frame-pointer (no level keeps a frame
 * pointer); it builds with the workloads' usual flags too. Written out in the style of
 * deep_omit_fp.c: noinline and noclone functions, each with different work on a volatile
 * after its call, so that no call becomes a tail call and no two levels fold into one. */
#include "common.h"

#if defined(__clang__)
#define LEVEL __attribute__((noinline))
#else
#define LEVEL __attribute__((noinline, noclone))
#endif

static volatile unsigned long sink;
/* Never set: keeps level30 from being noreturn, so every call has code after it. */
static volatile int stop;

/* The volatile local gives the leaf a stack slot, hence a frame in a frame-pointer build. */
LEVEL void level30(void) {
  volatile unsigned long local = 0;
  while (!stop) {
    for (int i = 0; i < 1000; i++)
      local += (unsigned long)i;
  }
  sink += local;
}

LEVEL void level29(void) {
  level30();
  sink ^= 29;
}

LEVEL void level28(void) {
  level29();
  sink += 28;
}

LEVEL void level27(void) {
  level28();
  sink |= 27;
}

LEVEL void level26(void) {
  level27();
  sink -= 26;
}

LEVEL void level25(void) {
  level26();
  sink ^= 25;
}

LEVEL void level24(void) {
  level25();
  sink += 24;
}

LEVEL void level23(void) {
  level24();
  sink |= 23;
}

LEVEL void level22(void) {
  level23();
  sink -= 22;
}

LEVEL void level21(void) {
  level22();
  sink ^= 21;
}

LEVEL void level20(void) {
  level21();
  sink += 20;
}

LEVEL void level19(void) {
  level20();
  sink |= 19;
}

LEVEL void level18(void) {
  level19();
  sink -= 18;
}

LEVEL void level17(void) {
  level18();
  sink ^= 17;
}

LEVEL void level16(void) {
  level17();
  sink += 16;
}

LEVEL void level15(void) {
  level16();
  sink |= 15;
}

LEVEL void level14(void) {
  level15();
  sink -= 14;
}

LEVEL void level13(void) {
  level14();
  sink ^= 13;
}

LEVEL void level12(void) {
  level13();
  sink += 12;
}

LEVEL void level11(void) {
  level12();
  sink |= 11;
}

LEVEL void level10(void) {
  level11();
  sink -= 10;
}

LEVEL void level9(void) {
  level10();
  sink ^= 9;
}

LEVEL void level8(void) {
  level9();
  sink += 8;
}

LEVEL void level7(void) {
  level8();
  sink |= 7;
}

LEVEL void level6(void) {
  level7();
  sink -= 6;
}

LEVEL void level5(void) {
  level6();
  sink ^= 5;
}

LEVEL void level4(void) {
  level5();
  sink += 4;
}

LEVEL void level3(void) {
  level4();
  sink |= 3;
}

LEVEL void level2(void) {
  level3();
  sink -= 2;
}

LEVEL void level1(void) {
  level2();
  sink ^= 1;
}

static void *deep30_thread(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "deep30");
  announce_ready();
  level1();
  sink += 31;
  return NULL;
}

int main(void) {
  start_thread(deep30_thread, NULL);
  print_ready();
  wait_stdin_eof();
}
