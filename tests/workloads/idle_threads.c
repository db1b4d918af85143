/* 32 threads that never wake: half wait on a condition variable nobody signals, half in a
 * long nanosleep. The reported tid is the last one started. */
#include "common.h"

#include <time.h>

#define THREADS 32

static pthread_mutex_t never_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cv = PTHREAD_COND_INITIALIZER;

static void *idle(void *arg) {
  long i = (long)arg;
  char name[16];
  snprintf(name, sizeof name, "idle-%ld", i);
  pthread_setname_np(pthread_self(), name);
  if (i == THREADS - 1)
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

int main(void) {
  for (long i = 0; i < THREADS; i++)
    start_thread(idle, (void *)i);
  print_ready();
  wait_stdin_eof();
}
