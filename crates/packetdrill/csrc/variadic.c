/*
 * The two variadic entries of `struct packetdrill_interface`: `fcntl` and `ioctl`.
 *
 * C declares them `int (*fcntl)(void *userdata, int fd, int cmd, ...)` and
 * `int (*ioctl)(void *userdata, int fd, unsigned long request, ...)`. Rust can call a variadic
 * function but cannot define one on stable, and pointing the table at a fixed-arity function
 * relies on the platform passing a variadic argument where a fixed one is read, which C does
 * not promise. So these two are C: each reads its optional argument with va_arg, with the type
 * the command gives it (and only for commands that take one: reading an argument that was not
 * passed is undefined), then calls the Rust implementation with fixed arity.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>

/* In crates/packetdrill/src/ffi.rs. */
int synack_packetdrill_fcntl_arg(void *userdata, int fd, int cmd, long arg);
int synack_packetdrill_ioctl_arg(void *userdata, int fd, unsigned long request, void *arg);

int synack_packetdrill_fcntl(void *userdata, int fd, int cmd, ...)
{
	long arg = 0;
	switch (cmd) {
	case F_SETFL:
	case F_SETFD: {
		/* POSIX: "int" third argument. */
		va_list ap;
		va_start(ap, cmd);
		arg = va_arg(ap, int);
		va_end(ap);
		break;
	}
	default:
		/* F_GETFL and F_GETFD take none; the rest are refused with EINVAL. */
		break;
	}
	return synack_packetdrill_fcntl_arg(userdata, fd, cmd, arg);
}

int synack_packetdrill_ioctl(void *userdata, int fd, unsigned long request, ...)
{
	void *arg = NULL;
	switch (request) {
	case FIONREAD:
	case TIOCOUTQ:
	case FIONBIO: {
		/* Each takes an "int *". */
		va_list ap;
		va_start(ap, request);
		arg = va_arg(ap, void *);
		va_end(ap);
		break;
	}
	default:
		/* Refused with ENOTTY (or EBADF); their argument is never read. */
		break;
	}
	return synack_packetdrill_ioctl_arg(userdata, fd, request, arg);
}
