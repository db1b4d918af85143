/* A thread "churner" that creates and joins <count> short-lived threads, one after
 * another, then renames itself "churned" (the harness polls its comm to know it is done)
 * and sleeps until the harness ends the process: the churn probe watch must stay bounded
 * through. Usage: thread_churn <count>. */
#include "common.h"

#include <sys/prctl.h>

static long count;

static void *short_lived(void *arg) { return arg; }

static void *churner(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "churner");
  announce_ready();
  for (long i = 0; i < count; i++) {
    pthread_t t = start_thread(short_lived, NULL);
    pthread_join(t, NULL);
  }
  prctl(PR_SET_NAME, "churned");
  for (;;)
    pause();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <count>\n", argv[0]);
    return 2;
  }
  count = atol(argv[1]);
  start_thread(churner, NULL);
  print_ready();
  wait_stdin_eof();
}
