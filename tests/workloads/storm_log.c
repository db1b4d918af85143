/* The getppid storm of syscall_storm.c, keeping its own count: every LOG_EVERY calls the
 * storm thread notes (CLOCK_MONOTONIC ns, calls so far) in memory, so a test can tell how
 * many calls it made inside any interval (probe's window) and compare probe's count.
 * clock_gettime goes through the vDSO; where it does not, its syscalls are not getppid.
 *
 * On SIGUSR1 the main thread writes the log as "ns calls" lines to argv[1] (through a
 * temporary file renamed into place, so a reader never sees half of it). */
#include "common.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define LOG_EVERY 1024
#define LOG_CAPACITY (1 << 20)

struct log_entry {
  uint64_t ns;
  uint64_t calls;
};

static struct log_entry entries[LOG_CAPACITY];
static atomic_size_t logged;
static volatile long sink;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((noinline)) static void storm_loop(void) {
  uint64_t calls = 0;
  for (;;) {
    sink += syscall(SYS_getppid);
    if (++calls % LOG_EVERY == 0) {
      size_t at = atomic_load_explicit(&logged, memory_order_relaxed);
      if (at < LOG_CAPACITY) {
        entries[at] = (struct log_entry){now_ns(), calls};
        atomic_store_explicit(&logged, at + 1, memory_order_release);
      }
    }
  }
}

static void *storm(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "storm");
  announce_ready();
  storm_loop();
  return NULL;
}

static void write_log(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *out = fopen(tmp, "w");
  if (!out) {
    perror("fopen");
    _exit(2);
  }
  size_t count = atomic_load_explicit(&logged, memory_order_acquire);
  for (size_t i = 0; i < count; i++)
    fprintf(out, "%llu %llu\n", (unsigned long long)entries[i].ns,
            (unsigned long long)entries[i].calls);
  if (fclose(out) != 0 || rename(tmp, path) != 0) {
    perror("write log");
    _exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: storm_log LOG_PATH\n");
    return 2;
  }
  /* Blocked before the storm thread exists, so only sigwait below takes it. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  start_thread(storm, NULL);
  print_ready();
  int sig;
  if (sigwait(&usr1, &sig) == 0)
    write_log(argv[1]);
  wait_stdin_eof();
}
