/*
 * An LD_PRELOAD helper for running google/packetdrill's own suite against synack's shared
 * object (scripts/packetdrill-upstream.sh builds and uses it; the object itself does not).
 *
 * packetdrill's `%{ ... }%` code events read TCP_INFO (and TCP_CC_INFO, SO_MEMINFO) with the C
 * library's getsockopt() on the descriptor the object handed out, which the kernel does not
 * know as a socket. This getsockopt() asks the kernel first and returns its answer whenever it
 * has one; only when the kernel fails does it ask the object loaded from
 * $SYNACK_PACKETDRILL_SO (already loaded by packetdrill: RTLD_NOLOAD), which answers for its own
 * descriptors and fails with EBADF for others, and the kernel's error stands.
 *
 * sendfile() (not in packetdrill's table either) to a descriptor of the object is the
 * object's: it reads the file and writes to its socket; any other goes to the C library's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	static getsockopt_fn real;
	if (!real)
		real = (getsockopt_fn)dlsym(RTLD_NEXT, "getsockopt");
	int r = -1;
	if (real)
		r = real(fd, level, name, val, len);
	else
		errno = ENOSYS;
	if (r == 0)
		return r;
	int kernel_errno = errno;
	const char *so = getenv("SYNACK_PACKETDRILL_SO");
	void *h = so ? dlopen(so, RTLD_NOW | RTLD_NOLOAD) : NULL;
	getsockopt_fn ours = h ? (getsockopt_fn)dlsym(h, "synack_packetdrill_getsockopt") : NULL;
	int ours_r = ours ? ours(fd, level, name, val, len) : -1;
	int ours_errno = errno;
	if (h)
		dlclose(h);
	if (ours_r == 0)
		return 0;
	errno = (ours && ours_errno != EBADF) ? ours_errno : kernel_errno;
	return -1;
}

typedef ssize_t (*sendfile_fn)(int, int, off_t *, size_t);

static ssize_t sendfile_any(const char *real_name, int out_fd, int in_fd, off_t *offset,
			    size_t count)
{
	const char *so = getenv("SYNACK_PACKETDRILL_SO");
	void *h = so ? dlopen(so, RTLD_NOW | RTLD_NOLOAD) : NULL;
	sendfile_fn ours = h ? (sendfile_fn)dlsym(h, "synack_packetdrill_sendfile") : NULL;
	ssize_t r = ours ? ours(out_fd, in_fd, offset, count) : -1;
	int ours_errno = ours ? errno : EBADF;
	if (h)
		dlclose(h);
	if (ours && (r >= 0 || ours_errno != EBADF)) {
		errno = ours_errno;
		return r;
	}
	sendfile_fn real = (sendfile_fn)dlsym(RTLD_NEXT, real_name);
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	return real(out_fd, in_fd, offset, count);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	return sendfile_any("sendfile", out_fd, in_fd, offset, count);
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	return sendfile_any("sendfile64", out_fd, in_fd, offset, count);
}
