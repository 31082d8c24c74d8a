// The few system calls Node cannot make itself: AF_VSOCK sockets, receiving a
// file descriptor over a unix socket (crun's --console-socket), a listening
// unix socket to hand to a child, opening a pty and setting its window size, mount/umount,
// sync, pointing stdio at /dev/null in one step, opening a tap device in
// another network namespace, a memfd filled from a file (a template's guest
// RAM), and reseeding the guest's random generators and setting its clock in
// a VM restored from a template. Everything else stays in TypeScript.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <sched.h>
#include <node_api.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, strerrorname_np(err) ? strerrorname_np(err) : "EUNKNOWN", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_value errno_value;
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "code", code);
  napi_throw(env, error);
  return NULL;
}

static int get_u32_args(napi_env env, napi_callback_info info, size_t want, uint32_t *out) {
  napi_value argv[4];
  size_t argc = 4;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return -1;
  }
  for (size_t i = 0; i < want; i++) {
    if (napi_get_value_uint32(env, argv[i], &out[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "arguments must be unsigned integers");
      return -1;
    }
  }
  return 0;
}

// vsockBind(port): a bound, not yet listening AF_VSOCK stream socket on any CID.
// libuv's pipe handle does listen() and accept() on it.
static napi_value vsock_bind(napi_env env, napi_callback_info info) {
  uint32_t a[1];
  if (get_u32_args(env, info, 1, a)) return NULL;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_VSOCK)", errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = a[0]};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind(AF_VSOCK)", err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// vsockConnectStart(cid, port): a non-blocking AF_VSOCK stream socket whose
// connect has begun (or is done); vsockConnectResult tells how it went. The
// kernel does the connect, so the event loop never waits for the guest.
static napi_value vsock_connect_start(napi_env env, napi_callback_info info) {
  uint32_t a[2];
  if (get_u32_args(env, info, 2, a)) return NULL;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_VSOCK)", errno);
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = a[0], .svm_port = a[1]};
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return throw_errno(env, "connect(AF_VSOCK)", err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// vsockConnectResult(fd): true once connected, false while the connect is
// still under way; throws the connect's error. Never blocks.
static napi_value vsock_connect_result(napi_env env, napi_callback_info info) {
  uint32_t a[1];
  if (get_u32_args(env, info, 1, a)) return NULL;
  struct pollfd p = {.fd = (int)a[0], .events = POLLOUT};
  int n = poll(&p, 1, 0);
  if (n < 0) return throw_errno(env, "poll(AF_VSOCK)", errno);
  napi_value result;
  if (n == 0) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt((int)a[0], SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
  if (soerr) return throw_errno(env, "connect(AF_VSOCK)", soerr);
  napi_get_boolean(env, true, &result);
  return result;
}

// receiveFd(socketFd, timeoutMs): the first file descriptor sent with
// SCM_RIGHTS on a connected unix socket (crun sends a pty master this way).
static napi_value receive_fd(napi_env env, napi_callback_info info) {
  uint32_t a[2];
  if (get_u32_args(env, info, 2, a)) return NULL;
  int sock = (int)a[0];
  struct pollfd p = {.fd = sock, .events = POLLIN};
  int n = poll(&p, 1, (int)a[1]);
  if (n < 0) return throw_errno(env, "poll", errno);
  if (n == 0) return throw_errno(env, "receiveFd", ETIMEDOUT);
  char data[256];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t got;
  do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) return throw_errno(env, "recvmsg", errno);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return throw_errno(env, "receiveFd: no descriptor received", EBADMSG);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// setWindowSize(fd, rows, columns) on a pty.
static napi_value set_window_size(napi_env env, napi_callback_info info) {
  uint32_t a[3];
  if (get_u32_args(env, info, 3, a)) return NULL;
  struct winsize ws = {.ws_row = (unsigned short)a[1], .ws_col = (unsigned short)a[2]};
  if (ioctl((int)a[0], TIOCSWINSZ, &ws) < 0) return throw_errno(env, "ioctl(TIOCSWINSZ)", errno);
  return NULL;
}

// openPty(): [master, slave], both close-on-exec and neither the caller's
// controlling terminal; the slave is for a child's stdio.
static napi_value open_pty(napi_env env, napi_callback_info info) {
  (void)info;
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return throw_errno(env, "posix_openpt", errno);
  char name[128];
  if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, sizeof name) != 0) {
    int err = errno;
    close(master);
    return throw_errno(env, "unlocking the pty", err);
  }
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    int err = errno;
    close(master);
    return throw_errno(env, "open(pty slave)", err);
  }
  napi_value result, m, s;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, master, &m);
  napi_create_int32(env, slave, &s);
  napi_set_element(env, result, 0, m);
  napi_set_element(env, result, 1, s);
  return result;
}

// Points fds 0-2 at /dev/null with dup2, so no other thread can ever be handed
// one of them in between (as a close-then-open would allow).
static napi_value detach_stdio(napi_env env, napi_callback_info info) {
  (void)info;
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return throw_errno(env, "open(/dev/null)", errno);
  for (int fd = 0; fd <= 2; fd++) {
    if (dup2(null_fd, fd) < 0) {
      int err = errno;
      close(null_fd);
      return throw_errno(env, "dup2", err);
    }
  }
  if (null_fd > 2) close(null_fd);
  return NULL;
}

static napi_value do_sync(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  sync();
  return NULL;
}

static int get_string(napi_env env, napi_value v, char *buf, size_t len) {
  size_t got;
  if (napi_get_value_string_utf8(env, v, buf, len, &got) != napi_ok || got >= len - 1) {
    napi_throw_type_error(env, NULL, "arguments must be strings of reasonable length");
    return -1;
  }
  return 0;
}

// unixListen(path, backlog): a blocking, close-on-exec unix stream socket
// listening on path, for a child process to accept on (virtiofsd --fd).
// Node's own listening sockets are non-blocking, and closing one unlinks it.
static napi_value unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  uint32_t backlog;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "unixListen(path, backlog)");
    return NULL;
  }
  if (get_string(env, argv[0], addr.sun_path, sizeof addr.sun_path)) return NULL;
  if (napi_get_value_uint32(env, argv[1], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "backlog must be an unsigned integer");
    return NULL;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX)", errno);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, (int)backlog) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, addr.sun_path, err);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// setXattr(path, name, value): sets an extended attribute on path itself (not
// a symlink's target), as overlayfs reads trusted.overlay.opaque.
static napi_value set_xattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "setXattr(path, name, value)");
    return NULL;
  }
  char path[4096], name[256], value[256];
  if (get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], name, sizeof name) || get_string(env, argv[2], value, sizeof value)) return NULL;
  if (lsetxattr(path, name, value, strlen(value), 0) < 0) return throw_errno(env, path, errno);
  return NULL;
}

// openTap(netnsPath, name): creates the tap device `name` (IFF_TAP, no packet
// info, with a virtio-net header) in the network namespace at netnsPath and
// returns its close-on-exec fd, for a VMM that stays in this namespace. setns
// applies to the calling thread only, and this thread returns to its own
// namespace before anything else runs on it.
static napi_value open_tap(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "openTap(netnsPath, name)");
    return NULL;
  }
  char path[4096];
  struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
  if (get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], ifr.ifr_name, IFNAMSIZ)) return NULL;
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return throw_errno(env, "open /proc/thread-self/ns/net", errno);
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(home);
    return throw_errno(env, path, err);
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(home);
    close(target);
    return throw_errno(env, "setns(network namespace)", err);
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  const char *what = "open /dev/net/tun";
  if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) < 0) {
    err = errno;
    what = "TUNSETIFF";
    close(fd);
    fd = -1;
  }
  // Back home, or this thread would open every later socket in the pod's namespace.
  if (setns(home, CLONE_NEWNET) < 0) {
    fprintf(stderr, "kata-ts native: cannot return to the own network namespace: %s\n", strerror(errno));
    abort();
  }
  close(home);
  close(target);
  if (fd < 0) return throw_errno(env, what, err);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// mount(source, target, fstype, flags, data)
static napi_value do_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data)");
    return NULL;
  }
  char source[4096], target[4096], fstype[64], data[4096];
  uint32_t flags;
  if (get_string(env, argv[0], source, sizeof source) || get_string(env, argv[1], target, sizeof target) ||
      get_string(env, argv[2], fstype, sizeof fstype) || get_string(env, argv[4], data, sizeof data))
    return NULL;
  if (napi_get_value_uint32(env, argv[3], &flags) != napi_ok) {
    napi_throw_type_error(env, NULL, "flags must be an unsigned integer");
    return NULL;
  }
  if (mount(source, target, fstype, flags, data[0] ? data : NULL) < 0) return throw_errno(env, "mount", errno);
  return NULL;
}

// umount(target, flags)
static napi_value do_umount(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char target[4096];
  uint32_t flags = 0;
  if (argc < 1 || get_string(env, argv[0], target, sizeof target)) return NULL;
  if (argc > 1) napi_get_value_uint32(env, argv[1], &flags);
  if (umount2(target, (int)flags) < 0) return throw_errno(env, "umount", errno);
  return NULL;
}

// memfdFromFile(path, name): a new memfd of the file's size holding its data,
// with the file's holes and zero pages left as holes, so the memfd takes only
// the memory of what the file really holds.
static napi_value memfd_from_file(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096], name[64];
  if (argc < 2 || get_string(env, argv[0], path, sizeof path) || get_string(env, argv[1], name, sizeof name)) return NULL;
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return throw_errno(env, "open", errno);
  off_t size = lseek(in, 0, SEEK_END);
  int out = memfd_create(name, MFD_CLOEXEC);
  if (size < 0 || out < 0 || ftruncate(out, size) < 0) {
    int err = errno;
    close(in);
    if (out >= 0) close(out);
    return throw_errno(env, "memfd of the file's size", err);
  }
  enum { CHUNK = 1 << 20, PAGE = 4096 };
  static const char zero[PAGE];
  char *buf = malloc(CHUNK);
  int err = buf ? 0 : ENOMEM;
  off_t pos = 0;
  while (!err && pos < size) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO) err = errno;  // ENXIO: only a hole is left
      break;
    }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    for (off_t at = data; !err && at < hole;) {
      size_t want = (size_t)(hole - at) < CHUNK ? (size_t)(hole - at) : CHUNK;
      ssize_t got = pread(in, buf, want, at);
      if (got <= 0) {
        err = got < 0 ? errno : EIO;
        break;
      }
      for (ssize_t off = 0; off < got; off += PAGE) {
        size_t n = (size_t)(got - off) < PAGE ? (size_t)(got - off) : PAGE;
        if (memcmp(buf + off, zero, n) == 0) continue;
        if (pwrite(out, buf + off, n, at + off) != (ssize_t)n) {
          err = errno ? errno : EIO;
          break;
        }
      }
      at += got;
    }
    pos = hole;
  }
  free(buf);
  close(in);
  if (err) {
    close(out);
    return throw_errno(env, "copying the file into the memfd", err);
  }
  napi_value result;
  napi_create_int32(env, out, &result);
  return result;
}

// Node links OpenSSL in; weak, so the addon still loads in a Node that does not export it.
extern void RAND_add(const void *buf, int num, double randomness) __attribute__((weak));

// reseedRandom(entropy): credits the bytes to the kernel's input pool, makes
// the kernel's generator reseed from it now (not at its next scheduled
// reseed), then makes this process's OpenSSL generator reseed too. In a VM
// restored from a template both held the template's state.
static napi_value reseed_random(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data;
  size_t len;
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || len == 0 || len > 512) {
    napi_throw_type_error(env, NULL, "entropy must be a Buffer of 1 to 512 bytes");
    return NULL;
  }
  struct rand_pool_info *pool = malloc(sizeof *pool + len);
  if (!pool) return throw_errno(env, "malloc", ENOMEM);
  pool->entropy_count = (int)(len * 8);
  pool->buf_size = (int)len;
  memcpy(pool->buf, data, len);
  int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
  int err = 0;
  if (fd < 0) err = errno;
  else if (ioctl(fd, RNDADDENTROPY, pool) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) err = errno;
  if (fd >= 0) close(fd);
  free(pool);
  if (err) return throw_errno(env, "reseeding the kernel's random generator", err);
  if (!RAND_add) {
    napi_throw_error(env, NULL, "this Node does not export OpenSSL's RAND_add: its random generator cannot be reseeded");
    return NULL;
  }
  // Additional input for a reseed that also draws fresh entropy from the (reseeded) kernel.
  RAND_add(data, (int)len, (double)len);
  return NULL;
}

// setRealtimeClock(ms): the wall clock, in ms since the epoch.
static napi_value set_realtime_clock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double ms;
  if (argc < 1 || napi_get_value_double(env, argv[0], &ms) != napi_ok || ms < 0) {
    napi_throw_type_error(env, NULL, "ms must be a non-negative number");
    return NULL;
  }
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
  if (clock_settime(CLOCK_REALTIME, &ts) < 0) return throw_errno(env, "clock_settime", errno);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"vsockBind", NULL, vsock_bind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockConnectStart", NULL, vsock_connect_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockConnectResult", NULL, vsock_connect_result, NULL, NULL, NULL, napi_enumerable, NULL},
      {"receiveFd", NULL, receive_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openPty", NULL, open_pty, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWindowSize", NULL, set_window_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixListen", NULL, unix_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openTap", NULL, open_tap, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, do_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount", NULL, do_umount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"detachStdio", NULL, detach_stdio, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sync", NULL, do_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"memfdFromFile", NULL, memfd_from_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reseedRandom", NULL, reseed_random, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setRealtimeClock", NULL, set_realtime_clock, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
