/* <count> threads (default 32) that never wake: even ones wait on a condition variable
 * nobody signals, odd ones sleep an hour at a time. Named idle-<i>, on small stacks so
 * hundreds fit in little memory. The reported tid is the last one started.
 * Usage: idle_threads [count]. */
#include "common.h"

#include <time.h>

static pthread_mutex_t never_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cv = PTHREAD_COND_INITIALIZER;
static long count = 32;

static void *idle(void *arg) {
  long i = (long)arg;
  char name[16];
  snprintf(name, sizeof name, "idle-%ld", i);
  pthread_setname_np(pthread_self(), name);
  if (i == count - 1)
    announce_ready();
  if (i % 2 == 0) {
    pthread_mutex_lock(&never_mu);
    for (;;)
      pthread_cond_wait(&never_cv, &never_mu);
  }
  for (;;) {
    struct timespec ts = {.tv_sec = 3600, .tv_nsec = 0};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc == 2)
    count = atol(argv[1]);
  if (argc > 2 || count <= 0) {
    fprintf(stderr, "usage: %s [count]\n", argv[0]);
    return 2;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (long i = 0; i < count; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, idle, (void *)i) != 0) {
      perror("pthread_create");
      _exit(2);
    }
  }
  print_ready();
  wait_stdin_eof();
}
