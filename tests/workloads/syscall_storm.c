/* A thread "storm" calling getppid() through syscall(2) in a tight loop (glibc does not
 * cache getppid, and syscall() makes sure every call enters the kernel). */
#include "common.h"

static volatile long sink;

__attribute__((noinline)) static void storm_loop(void) {
  for (;;)
    sink += syscall(SYS_getppid);
}

static void *storm(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "storm");
  announce_ready();
  storm_loop();
  return NULL;
}

int main(void) {
  start_thread(storm, NULL);
  print_ready();
  wait_stdin_eof();
}
