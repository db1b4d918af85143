/* `thread_churn <count>`: creates and joins <count> short-lived threads, one after
 * another, prints "threads=<count> secs=<elapsed>" and exits 0. The bench runs it under
 * probe watch to see that watch's memory and kernel maps end where they started (see
 * xtask/src/bench/watch.rs). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *short_lived(void *arg) { return arg; }

int main(int argc, char **argv) {
  long count = argc == 2 ? atol(argv[1]) : 0;
  if (count <= 0) {
    fprintf(stderr, "usage: %s <count>\n", argv[0]);
    return 2;
  }
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (long i = 0; i < count; i++) {
    pthread_t thread;
    int err = pthread_create(&thread, NULL, short_lived, NULL);
    if (err != 0) {
      fprintf(stderr, "pthread_create failed after %ld threads: error %d\n", i, err);
      return 1;
    }
    pthread_join(thread, NULL);
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  double secs = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  printf("threads=%ld secs=%.3f\n", count, secs);
  return 0;
}
