/* The main thread exits (pthread_exit) while a thread "orphan" spins on: the process's
 * /proc/PID/maps then reads empty, and only its live thread's task directory shows them.
 * Lives until stdin reaches EOF (read by a third thread). */
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) static void orphan_loop(void) {
  volatile unsigned long local = 0;
  for (;;) {
    for (int i = 0; i < 1000; i++)
      local += (unsigned long)i;
    sink += local;
  }
}

static void *orphan(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "orphan");
  announce_ready();
  orphan_loop();
  return NULL;
}

static void *stdin_watch(void *arg) {
  (void)arg;
  wait_stdin_eof();
  exit(0);
}

int main(void) {
  start_thread(orphan, NULL);
  start_thread(stdin_watch, NULL);
  print_ready();
  pthread_exit(NULL);
}
