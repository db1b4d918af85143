/* The native side of py_ctypes_spin.py, a shared library built without frame pointers
 * (see tests/src/workload.rs, NO_FRAME_POINTERS): native_spin(seconds) calls native_inner,
 * the spinning leaf, until that many seconds have passed, so a sample of the caller's
 * thread is almost always native_inner <- native_spin <- libffi <- _ctypes <- CPython.
 * The work after each call keeps the calls from becoming tail calls; noclone keeps gcc
 * from renaming the functions; native_inner is static so the call does not go through the
 * PLT. */
#include <time.h>

#if defined(__clang__)
#define NATIVE __attribute__((noinline))
#else
#define NATIVE __attribute__((noinline, noclone))
#endif

static volatile unsigned long sink;

static double now_secs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* About a millisecond of work per call: the clock is read seldom enough not to matter. */
static NATIVE void native_inner(void) {
  volatile unsigned long local = 0;
  for (int i = 0; i < 1000000; i++)
    local += (unsigned long)i;
  sink += local;
}

NATIVE long native_spin(double seconds) {
  double deadline = now_secs() + seconds;
  long rounds = 0;
  while (now_secs() < deadline) {
    native_inner();
    rounds++;
  }
  sink ^= (unsigned long)rounds;
  return rounds;
}
