/* A syscall storm: getppid() through syscall(2) in a tight loop (glibc does not cache
 * getppid, and syscall() makes sure every call enters the kernel). Every call fires the
 * sys_enter tracepoint, so this is the worst case for a systemwide syscall counter. */
#include "workload.h"

#include <sys/syscall.h>
#include <unistd.h>

#define CALLS_PER_CHUNK 1000UL

static volatile long sink;

static void chunk(void) {
  for (unsigned long i = 0; i < CALLS_PER_CHUNK; i++)
    sink += syscall(SYS_getppid);
}

int main(int argc, char **argv) {
  return run_for(parse_secs(argc, argv), chunk, CALLS_PER_CHUNK);
}
