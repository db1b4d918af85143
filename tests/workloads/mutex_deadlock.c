/* Threads "left" and "right" deadlocked on two pthread mutexes: left_locks takes A then B,
 * right_locks takes B then A, each holding its first while the other takes its own. The
 * reported tid is left's; both are blocked in their second lock a moment after the ready
 * line. */
#include "common.h"

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold;

/* Each unlocks after its second lock (never reached), as real code would: the second lock
 * is then a call, not a tail jump, so the locking function stays on the stack. */
__attribute__((noinline)) static void left_locks(void) {
  pthread_mutex_lock(&a);
  pthread_barrier_wait(&both_hold);
  pthread_mutex_lock(&b);
  pthread_mutex_unlock(&b);
  pthread_mutex_unlock(&a);
}

__attribute__((noinline)) static void right_locks(void) {
  pthread_mutex_lock(&b);
  pthread_barrier_wait(&both_hold);
  pthread_mutex_lock(&a);
  pthread_mutex_unlock(&a);
  pthread_mutex_unlock(&b);
}

static void *left(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "left");
  announce_ready();
  left_locks();
  return NULL;
}

static void *right(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "right");
  right_locks();
  return NULL;
}

int main(void) {
  pthread_barrier_init(&both_hold, NULL, 2);
  start_thread(left, NULL);
  start_thread(right, NULL);
  print_ready();
  wait_stdin_eof();
}
