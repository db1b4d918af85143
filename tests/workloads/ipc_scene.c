/* The scene `probe dump` was born from: thread "sender" blocked in msgsnd on a full SysV
 * message queue, while thread "connector" is blocked connecting to a unix socket whose
 * listener never accepts (its backlog already full). A SysV queue outlives its process:
 * the harness finds it in /proc/sysvipc/msg (its last sender is this process) and removes
 * it (IPC_RMID) whatever happens. The reported tid is the sender's. */
#include "common.h"

#include <errno.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/socket.h>
#include <sys/un.h>

static int queue;
static struct sockaddr_un address;

struct message {
  long type;
  char text[512];
};

static void *sender(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "sender");
  struct message message = {.type = 1};
  memset(message.text, 'x', sizeof message.text);
  /* Fill the queue without waiting, then block on the next one. */
  while (msgsnd(queue, &message, sizeof message.text, IPC_NOWAIT) == 0) {
  }
  if (errno != EAGAIN) {
    perror("msgsnd");
    _exit(2);
  }
  announce_ready();
  msgsnd(queue, &message, sizeof message.text, 0);
  return NULL;
}

static void *connector(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "connector");
  /* With a backlog of 0 one connection waits to be accepted; the next connect blocks. */
  for (;;) {
    int client = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&address, sizeof address) != 0) {
      perror("connect");
      _exit(2);
    }
  }
  return NULL;
}

int main(void) {
  queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
  if (queue < 0) {
    perror("msgget");
    return 2;
  }
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  address.sun_family = AF_UNIX;
  /* Abstract: nothing on disk to clean up. */
  snprintf(address.sun_path + 1, sizeof address.sun_path - 1, "probe-ipc-scene-%d", (int)getpid());
  if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 0) != 0) {
    perror("listen");
    return 2;
  }
  start_thread(connector, NULL);
  start_thread(sender, NULL);
  print_ready();
  wait_stdin_eof();
}
