/*
 * pause: the sandbox process of the e2e cluster's pods (containerd's sandbox_image).
 *
 * It holds the pod's namespaces open, so it does nothing but wait: it exits 0 on SIGINT or SIGTERM
 * and, being PID 1 of the pod when the pod shares its PID namespace, reaps every child that is
 * handed to it. Built with `gcc -static` by hack/e2e/build into an image of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "hpp-e2e-pause 1"

static void reap_children(void) {
  for (;;) {
    pid_t pid = waitpid(-1, NULL, WNOHANG);
    if (pid > 0) continue;
    if (pid < 0 && errno == EINTR) continue;
    return; /* 0: children left but none exited; -1 ECHILD: no children at all */
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    puts(PAUSE_VERSION);
    return 0;
  }
  if (getpid() != 1) fprintf(stderr, "pause: warning: not PID 1\n");

  /* Take the signals we care about synchronously: no handler, no race with pause(). */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
    perror("pause: sigprocmask");
    return 1;
  }

  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      perror("pause: sigwaitinfo");
      return 1;
    }
    if (sig == SIGCHLD) {
      reap_children();
      continue;
    }
    fprintf(stderr, "pause: got signal %d, exiting\n", sig);
    return 0;
  }
}
