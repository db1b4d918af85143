/* Shared by the bench workloads: argv parsing, the clock, and the one output line.
 *
 * Protocol (see xtask/src/bench/): `<workload> <seconds>` runs its loop for that much wall
 * time, then prints exactly one line "iterations=<n> secs=<elapsed> cpu_secs=<on-CPU>" and
 * exits 0. The workload measures its own times so that process start-up and exit, which
 * differ under observers, stay out of the rate. Its on-CPU time tells how much of a CPU it
 * got: on a shared machine other load steals some, which a per-CPU-second rate factors out. */
#ifndef PROBE_BENCH_WORKLOAD_H
#define PROBE_BENCH_WORKLOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double clock_secs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Monotonic seconds. clock_gettime goes through the vDSO, so checking the clock does not
 * enter the kernel and never shows up as a syscall. */
static inline double now_secs(void) { return clock_secs(CLOCK_MONOTONIC); }

/* This process's CPU time. A real syscall, so it is read only at the start and the end. */
static inline double cpu_secs(void) { return clock_secs(CLOCK_PROCESS_CPUTIME_ID); }

/* The run length from argv[1], in seconds; exits 2 with a usage line when it is missing.
 * With `--start-on-eof` after it (for observers that attach to a PID, as strace -p does),
 * it first writes "ready" on stderr and waits for end of file on its stdin: the harness
 * attaches, then lets it go, and the run is measured from then on. */
static inline double parse_secs(int argc, char **argv) {
  int gated = argc == 3 && strcmp(argv[2], "--start-on-eof") == 0;
  double secs = argc == 2 || gated ? strtod(argv[1], NULL) : 0.0;
  if (secs <= 0.0) {
    fprintf(stderr, "usage: %s <seconds> [--start-on-eof]\n", argv[0]);
    exit(2);
  }
  if (gated) {
    fputs("ready\n", stderr);
    fflush(stderr);
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
  }
  return secs;
}

/* Runs `chunk` (which does `per_chunk` iterations) until `secs` have passed, then prints
 * the result line. The clock is read once per chunk so its cost stays negligible. */
static inline int run_for(double secs, void (*chunk)(void), unsigned long per_chunk) {
  double cpu_start = cpu_secs();
  double start = now_secs();
  double elapsed = 0.0;
  unsigned long iterations = 0;
  do {
    chunk();
    iterations += per_chunk;
    elapsed = now_secs() - start;
  } while (elapsed < secs);
  double cpu = cpu_secs() - cpu_start;
  printf("iterations=%lu secs=%.6f cpu_secs=%.6f\n", iterations, elapsed, cpu);
  return 0;
}

#endif
