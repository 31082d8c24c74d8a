// The pod's pause process: holds the pod's namespaces and does nothing else.
// It reaps children it inherits (it is PID 1 of a shared PID namespace) and
// ends on SIGTERM or SIGINT, as Kubernetes' own pause does.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction quit = {.sa_handler = stop};
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &quit, NULL) < 0 || sigaction(SIGTERM, &quit, NULL) < 0 || sigaction(SIGCHLD, &child, NULL) < 0) return 1;
  for (;;) pause();
}
