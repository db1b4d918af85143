/* A thread "swapper" that loops in a function of one shared library, then unloads it and
 * loops in a function of another library loaded in its place (usually at the same
 * address, which is the point): a profiler that keeps the first library's mapping names
 * the second loop after the first library's function.
 *
 * argv[1], argv[2]: the two libraries; each exports `long swap_spin(long ms)`, which loops
 * for `ms` milliseconds in a function named after the library (swap_spin_a, swap_spin_b).
 * Prints "ready pid=.. tid=.." once the first loop runs, and "same_base=0|1" on stderr. */
#include "common.h"

#include <dlfcn.h>
#include <string.h>

static const char *libs[2];

static long run_library(const char *path, long ms, void **base) {
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    exit(2);
  }
  long (*spin)(long) = (long (*)(long))dlsym(handle, "swap_spin");
  if (spin == NULL) {
    fprintf(stderr, "dlsym: %s\n", dlerror());
    exit(2);
  }
  Dl_info info;
  if (dladdr((void *)spin, &info) != 0)
    *base = info.dli_fbase;
  long result = spin(ms);
  dlclose(handle);
  return result;
}

static void *swapper(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "swapper");
  announce_ready();
  void *first = NULL, *second = NULL;
  long sink = run_library(libs[0], 1500, &first);
  sink += run_library(libs[1], 1500, &second);
  fprintf(stderr, "same_base=%d sink=%ld\n", first == second, sink);
  for (;;)
    pause();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dl_swap LIB_A LIB_B\n");
    return 2;
  }
  libs[0] = argv[1];
  libs[1] = argv[2];
  start_thread(swapper, NULL);
  print_ready();
  wait_stdin_eof();
}
