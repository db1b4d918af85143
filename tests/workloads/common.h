/* Shared by the test workloads: readiness line and stdin-EOF lifetime.
 *
 * Protocol (see tests/src/lib.rs): once the interesting thread runs, print exactly one
 * line "ready pid=<pid> tid=<tid>" on stdout, then live until stdin reaches EOF. The
 * harness therefore never sleeps and retries. Include this header first: it defines
 * _GNU_SOURCE, which must precede every system header. */
#ifndef PROBE_WORKLOAD_COMMON_H
#define PROBE_WORKLOAD_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Written by the interesting thread, read by main; guarded by ready_mu. */
static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
static pid_t ready_tid;

/* Called by the interesting thread itself, after naming itself. */
static inline void announce_ready(void) {
  pthread_mutex_lock(&ready_mu);
  ready_tid = (pid_t)syscall(SYS_gettid);
  pthread_cond_signal(&ready_cv);
  pthread_mutex_unlock(&ready_mu);
}

/* Called by main: waits for announce_ready, prints the ready line. */
static inline void print_ready(void) {
  pthread_mutex_lock(&ready_mu);
  while (ready_tid == 0)
    pthread_cond_wait(&ready_cv, &ready_mu);
  pid_t tid = ready_tid;
  pthread_mutex_unlock(&ready_mu);
  printf("ready pid=%d tid=%d\n", (int)getpid(), (int)tid);
  fflush(stdout);
}

/* Called by main: blocks until the harness closes our stdin, then exits the process. */
static inline void wait_stdin_eof(void) {
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  _exit(0);
}

static inline pthread_t start_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  if (pthread_create(&t, NULL, fn, arg) != 0) {
    perror("pthread_create");
    _exit(2);
  }
  return t;
}

#endif
