/* A thread "spinner" in a pure user-space loop: spin_outer -> spin_middle -> spin_inner.
 * With argv[1] == "--escape-name" the thread is named "\x1b[31mred" instead, to check that
 * probe never prints a thread name raw to a terminal. With argv[1] == "--invalid-utf8-comm"
 * the process (its main thread) is named with bytes that are not UTF-8. */
#include "common.h"

#include <string.h>
#include <sys/prctl.h>

static volatile unsigned long sink;
/* Never set: keeps spin_outer from being noreturn, so the call in spinner() is not the
 * last instruction and its return address stays inside spinner(). */
static volatile int stop;

/* gcc 12 omits the frame of a leaf function that needs no stack slot, even with
 * -mno-omit-leaf-frame-pointer, which would make a frame-pointer unwinder skip
 * spin_middle. The volatile local gives spin_inner a stack slot, hence a frame. */
__attribute__((noinline)) static void spin_inner(void) {
  volatile unsigned long local = 0;
  for (int i = 0; i < 1000; i++)
    local += (unsigned long)i;
  sink += local;
}

__attribute__((noinline)) static void spin_middle(void) {
  spin_inner();
  sink ^= 1;
}

__attribute__((noinline)) static void spin_outer(void) {
  while (!stop) {
    spin_middle();
    sink += 2;
  }
}

static void *spinner(void *name) {
  pthread_setname_np(pthread_self(), (const char *)name);
  announce_ready();
  spin_outer();
  return NULL;
}

int main(int argc, char **argv) {
  const char *name = "spinner";
  if (argc > 1 && strcmp(argv[1], "--escape-name") == 0)
    name = "\x1b[31mred";
  if (argc > 1 && strcmp(argv[1], "--invalid-utf8-comm") == 0)
    prctl(PR_SET_NAME, "spin\xff\xfe", 0, 0, 0);
  start_thread(spinner, (void *)name);
  print_ready();
  wait_stdin_eof();
}
