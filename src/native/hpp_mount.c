// mount(2), umount2(2), a statx mount-point test and a loop device's status for the daemon, so that publishing a volume costs a system call instead of
// spawning mount(8) or umount(8). Both run on the libuv thread pool (a mount can block, for instance on
// a busy filesystem) and settle a promise: resolved with undefined, or rejected with an Error carrying
// `errno` (a positive number) and `syscall`.
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/loop.h>
#include <node_api.h>

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000  // linux/stat.h since 5.8; older C libraries lack the name
#endif

#define MAX_PATH_BYTES 4096
#define MAX_DATA_BYTES 4096

typedef enum { OP_MOUNT, OP_UMOUNT2 } op_kind;

typedef struct {
  op_kind kind;
  char *source;  // NULL when not given
  char *target;
  char *fstype;  // NULL when not given
  char *data;    // NULL when not given
  unsigned long flags;
  int err;  // errno of the call, 0 on success
  napi_deferred deferred;
  napi_async_work work;
} op;

// A zeroed operation of `kind`; NULL with a JS exception pending when memory is short.
static op *op_new(napi_env env, op_kind kind) {
  op *o = calloc(1, sizeof(op));
  if (!o) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  o->kind = kind;
  return o;
}

static void op_free(op *o) {
  free(o->source);
  free(o->target);
  free(o->fstype);
  free(o->data);
  free(o);
}

// Copies a string argument; a null or undefined argument gives NULL when `optional`.
// Returns false (with a JS exception pending) on a wrong type or a string that is too long.
static bool string_arg(napi_env env, napi_value v, bool optional, size_t max, const char *what, char **out) {
  napi_valuetype t;
  *out = NULL;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (optional && (t == napi_null || t == napi_undefined)) return true;
  if (t != napi_string) {
    napi_throw_type_error(env, NULL, what);
    return false;
  }
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
  if (len >= max) {
    napi_throw_range_error(env, NULL, what);
    return false;
  }
  char *s = malloc(len + 1);
  if (!s) {
    napi_throw_error(env, NULL, "out of memory");
    return false;
  }
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok || strlen(s) != len) {
    // An embedded NUL would silently shorten the path the kernel sees.
    free(s);
    napi_throw_type_error(env, NULL, what);
    return false;
  }
  *out = s;
  return true;
}

static void execute(napi_env env, void *arg) {
  (void)env;
  op *o = arg;
  int rc = o->kind == OP_MOUNT ? mount(o->source, o->target, o->fstype, o->flags, o->data)
                               : umount2(o->target, (int)o->flags);
  o->err = rc == 0 ? 0 : errno;
}

static void complete(napi_env env, napi_status status, void *arg) {
  op *o = arg;
  if (status != napi_ok || o->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    if (status == napi_ok) {
      napi_resolve_deferred(env, o->deferred, undef);
    } else {
      napi_value msg, error;
      napi_create_string_utf8(env, "operation cancelled", NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, NULL, msg, &error);
      napi_reject_deferred(env, o->deferred, error);
    }
  } else {
    napi_value msg, error, errno_value, syscall;
    napi_create_string_utf8(env, strerror(o->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &error);
    napi_create_int32(env, o->err, &errno_value);
    napi_set_named_property(env, error, "errno", errno_value);
    napi_create_string_utf8(env, o->kind == OP_MOUNT ? "mount" : "umount2", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, error, "syscall", syscall);
    napi_reject_deferred(env, o->deferred, error);
  }
  napi_delete_async_work(env, o->work);
  op_free(o);
}

static napi_value queue(napi_env env, op *o) {
  napi_value promise, name;
  if (napi_create_promise(env, &o->deferred, &promise) != napi_ok) goto fail;
  napi_create_string_utf8(env, o->kind == OP_MOUNT ? "hpp_mount" : "hpp_umount2", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, execute, complete, o, &o->work) != napi_ok) goto fail;
  if (napi_queue_async_work(env, o->work) != napi_ok) {
    napi_delete_async_work(env, o->work);
    goto fail;
  }
  return promise;
fail:
  op_free(o);
  return NULL;
}

static bool flags_arg(napi_env env, napi_value v, const char *what, unsigned long *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 || d != (double)(unsigned long)d) {
    napi_throw_type_error(env, NULL, what);
    return false;
  }
  *out = (unsigned long)d;
  return true;
}

// The call's arguments into argv[0..n-1]; a TypeError naming `usage` unless there are exactly n.
static bool exact_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc != n) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

// mount(source, target, fstype, flags, data) -> Promise<void>
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!exact_args(env, info, 5, argv, "mount(source, target, fstype, flags, data) takes 5 arguments")) return NULL;
  op *o = op_new(env, OP_MOUNT);
  if (!o) return NULL;
  if (!string_arg(env, argv[0], true, MAX_PATH_BYTES, "mount: source must be a path string or null", &o->source) ||
      !string_arg(env, argv[1], false, MAX_PATH_BYTES, "mount: target must be a path string", &o->target) ||
      !string_arg(env, argv[2], true, 256, "mount: fstype must be a string or null", &o->fstype) ||
      !flags_arg(env, argv[3], "mount: flags must be a 32-bit unsigned integer", &o->flags) ||
      !string_arg(env, argv[4], true, MAX_DATA_BYTES, "mount: data must be a string or null", &o->data)) {
    op_free(o);
    return NULL;
  }
  return queue(env, o);
}

// umount2(target, flags) -> Promise<void>
static napi_value js_umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!exact_args(env, info, 2, argv, "umount2(target, flags) takes 2 arguments")) return NULL;
  op *o = op_new(env, OP_UMOUNT2);
  if (!o) return NULL;
  if (!string_arg(env, argv[0], false, MAX_PATH_BYTES, "umount2: target must be a path string", &o->target) ||
      !flags_arg(env, argv[1], "umount2: flags must be a 32-bit unsigned integer", &o->flags)) {
    op_free(o);
    return NULL;
  }
  return queue(env, o);
}

// isMountRoot(path) -> true | false | null. Whether `path` (not following a final symlink) is the root
// of a mount, from statx's STATX_ATTR_MOUNT_ROOT: one system call instead of reading and parsing
// /proc/self/mountinfo. false when the path does not exist; null when the kernel cannot tell (before
// Linux 5.8) or the lookup fails otherwise (a dead FUSE mount, say), so the caller reads mountinfo.
// Synchronous: it is a stat.
static napi_value js_is_mount_root(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  if (!exact_args(env, info, 1, argv, "isMountRoot(path) takes 1 argument")) return NULL;
  char *p;
  if (!string_arg(env, argv[0], false, MAX_PATH_BYTES, "isMountRoot: path must be a path string", &p)) return NULL;
  struct statx stx;
  int rc = statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &stx);
  int err = errno;
  free(p);
  if (rc != 0) {
    if (err == ENOENT || err == ENOTDIR) napi_get_boolean(env, false, &result);
    else napi_get_null(env, &result);
  } else if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) {
    napi_get_null(env, &result);
  } else {
    napi_get_boolean(env, (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0, &result);
  }
  return result;
}

// loopStatus(device) -> { backingDevice: bigint, backingInode: bigint, flags: number } | null.
// LOOP_GET_STATUS64 of a loop device: the device and inode of the file that backs it, as the kernel
// holds them (no path involved), and its LO_FLAGS_*. null when the device backs nothing (ENXIO).
// Synchronous: an open, an ioctl and a close. The caller serialises it with its own detaches, since a
// detach that finds the device open is only deferred.
static napi_value js_loop_status(napi_env env, napi_callback_info info) {
  napi_value argv[1], result, v;
  if (!exact_args(env, info, 1, argv, "loopStatus(device) takes 1 argument")) return NULL;
  char *p;
  if (!string_arg(env, argv[0], false, MAX_PATH_BYTES, "loopStatus: device must be a path string", &p)) return NULL;
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  int err = errno;
  free(p);
  struct loop_info64 li;
  int rc = -1;
  if (fd >= 0) {
    rc = ioctl(fd, LOOP_GET_STATUS64, &li);
    err = errno;
    close(fd);
  }
  if (rc != 0) {
    if (err == ENXIO) {
      napi_get_null(env, &result);
      return result;
    }
    napi_value msg, error, errno_value, syscall;
    napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &error);
    napi_create_int32(env, err, &errno_value);
    napi_set_named_property(env, error, "errno", errno_value);
    napi_create_string_utf8(env, fd < 0 ? "open" : "ioctl(LOOP_GET_STATUS64)", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, error, "syscall", syscall);
    napi_throw(env, error);
    return NULL;
  }
  napi_create_object(env, &result);
  napi_create_bigint_uint64(env, li.lo_device, &v);
  napi_set_named_property(env, result, "backingDevice", v);
  napi_create_bigint_uint64(env, li.lo_inode, &v);
  napi_set_named_property(env, result, "backingInode", v);
  napi_create_uint32(env, li.lo_flags, &v);
  napi_set_named_property(env, result, "flags", v);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isMountRoot", NULL, js_is_mount_root, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loopStatus", NULL, js_loop_status, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
