// kata-ts guest init (PID 1). It mounts the pseudo filesystems, starts the
// agent with the console as its stdio, reaps every orphan the containers leave
// behind, and powers the VM off when the agent exits, so a dead agent is never
// mistaken for a live sandbox.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_NODE "/usr/bin/node"
#define AGENT_SCRIPT "/usr/lib/kata-ts/agent-loader.cjs"

static void say(const char *msg) {
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return;
  dprintf(fd, "kata-ts-init: %s\n", msg);
  close(fd);
}

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY) {
    char msg[256];
    snprintf(msg, sizeof msg, "mount %s on %s: %s", type, dst, strerror(errno));
    say(msg);
  }
}

static long uptime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void power_off(void) {
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

int main(void) {
  long started = uptime_ms();
  const unsigned long nosuid_nodev_noexec = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  must_mount("proc", "/proc", "proc", nosuid_nodev_noexec, NULL);
  must_mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, NULL);
  must_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  must_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  must_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  must_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  must_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  must_mount("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid_nodev_noexec, "nsdelegate");
  // Containers get their own cgroups with every controller the guest has.
  int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    const char *controllers[] = {"+cpu", "+cpuset", "+io", "+memory", "+pids"};
    for (size_t i = 0; i < sizeof controllers / sizeof controllers[0]; i++)
      if (write(fd, controllers[i], strlen(controllers[i])) < 0) say("cannot enable a cgroup controller");
    close(fd);
  }
  symlink("/proc/self/fd", "/dev/fd");

  char started_env[64];
  snprintf(started_env, sizeof started_env, "KATA_TS_INIT_UPTIME_MS=%ld", started);
  pid_t agent = fork();
  if (agent == 0) {
    setsid();
    int console = open("/dev/console", O_RDWR | O_CLOEXEC);
    if (console >= 0) {
      dup2(console, 1);
      dup2(console, 2);
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 0);
    char *argv[] = {AGENT_NODE, AGENT_SCRIPT, NULL};
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", started_env, NULL};
    execve(AGENT_NODE, argv, envp);
    char msg[128];
    snprintf(msg, sizeof msg, "cannot exec %s: %s", AGENT_NODE, strerror(errno));
    say(msg);
    _exit(127);
  }
  if (agent < 0) {
    say("cannot fork the agent");
    power_off();
  }
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid == agent) {
      char msg[64];
      snprintf(msg, sizeof msg, "agent exited (status %d), powering off", status);
      say(msg);
      power_off();
    }
    if (pid < 0 && errno == ECHILD) power_off();
  }
}
