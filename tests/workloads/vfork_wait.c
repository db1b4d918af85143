/* A thread in uninterruptible sleep, reliably and without root: "vforker" calls vfork(),
 * which keeps the calling thread in D state (TASK_KILLABLE, in wait_for_vfork_done) until
 * the child execs or exits. The child only sleeps, in raw syscalls (it shares the parent's
 * memory), and exits once its parent is gone, so ending the workload by its PID ends both.
 * The reported tid is the vforker's. */
#include "common.h"

#include <time.h>

static pid_t parent;

__attribute__((noinline)) static void hold_in_vfork(void) {
  pid_t child = vfork();
  if (child == 0) {
    struct timespec tick = {0, 100 * 1000 * 1000};
    while ((pid_t)syscall(SYS_getppid) == parent)
      syscall(SYS_nanosleep, &tick, NULL);
    syscall(SYS_exit, 0);
  }
}

static void *vforker(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "vforker");
  announce_ready();
  hold_in_vfork();
  return NULL;
}

int main(void) {
  parent = getpid();
  start_thread(vforker, NULL);
  print_ready();
  wait_stdin_eof();
}
