/* A thread "tree" that splits its time 2:1 between two call chains of its own:
 * main_loop -> heavy_a -> leaf_a does twice the work per iteration of
 * main_loop -> light_b -> leaf_b, so a profile of it must show the two chains in a 2:1
 * proportion, with leaf_a's loop at the lines marked below.
 *
 * Without arguments it lives until stdin reaches EOF, like the other workloads. With
 * argv[1] == "--for-ms" and a number it exits (code 0) after that many milliseconds, stdin
 * untouched: a short-lived child for `probe record -- COMMAND`. */
#include "common.h"

#include <string.h>
#include <time.h>

/* Loop iterations of one call of leaf_b; leaf_a does twice as many. Large enough that
 * calls and returns are a negligible share of the time. */
#define UNIT 20000

static volatile unsigned long sink;
/* Never set: keeps main_loop from being noreturn (see spin_loop.c). */
static volatile int stop;

/* The volatile locals give the leaves a stack slot, hence a frame (see spin_loop.c). The
 * two loops differ (add vs xor) so that no compiler folds the leaves into one. */
__attribute__((noinline)) static void leaf_a(int n) {
  volatile unsigned long local = 0;
  for (int i = 0; i < n; i++) /* LINE leaf_a */
    local += (unsigned long)i;
  sink += local;
}

__attribute__((noinline)) static void leaf_b(int n) {
  volatile unsigned long local = 0;
  for (int i = 0; i < n; i++)
    local ^= (unsigned long)i;
  sink += local;
}

__attribute__((noinline)) static void heavy_a(void) {
  leaf_a(2 * UNIT);
  sink ^= 1;
}

__attribute__((noinline)) static void light_b(void) {
  leaf_b(UNIT);
  sink ^= 2;
}

__attribute__((noinline)) static void main_loop(void) {
  while (!stop) {
    heavy_a();
    light_b();
  }
}

static void *tree(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "tree");
  announce_ready();
  main_loop();
  return NULL;
}

int main(int argc, char **argv) {
  long for_ms = -1;
  if (argc > 2 && strcmp(argv[1], "--for-ms") == 0)
    for_ms = atol(argv[2]);
  start_thread(tree, NULL);
  print_ready();
  if (for_ms < 0)
    wait_stdin_eof();
  struct timespec ts = {.tv_sec = for_ms / 1000, .tv_nsec = (for_ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  _exit(0);
}
