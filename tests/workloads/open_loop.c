/* A thread "opener" looping open("/") / fstat / close: three syscalls at equal rates. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>

static volatile long sink;

__attribute__((noinline)) static void open_fstat_close(void) {
  struct stat st;
  int fd = open("/", O_RDONLY);
  if (fd < 0) {
    perror("open");
    _exit(2);
  }
  if (fstat(fd, &st) != 0) {
    perror("fstat");
    _exit(2);
  }
  sink += (long)st.st_ino;
  close(fd);
}

static void *opener(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "opener");
  announce_ready();
  for (;;)
    open_fstat_close();
  return NULL;
}

int main(void) {
  start_thread(opener, NULL);
  print_ready();
  wait_stdin_eof();
}
