/*
 * loadgen: the D-Bus load generator behind bench/run.py.
 *
 * It owns the client side of every benchmark workload: it connects to a bus
 * (unix:path= or unix:abstract=), authenticates with SASL EXTERNAL, says
 * Hello, and then drives one workload from a single-threaded epoll loop with
 * batched writes (one send() per connection per loop iteration), so that the
 * broker, not this program, is the bottleneck. It must never measure the
 * broker itself (run.py reads /proc), never sleep to pace load, and never
 * talk to anything but the one bus address it is given.
 *
 * Protocol with run.py (line based, stdout/stdin):
 *   loadgen MODE ADDRESS [key=value ...]
 *   setup (connect, names, matches) -> prints "ready"
 *   waits for one line on stdin       -> runs the measured window
 *   prints one JSON object line       -> waits for EOF on stdin, then exits
 * Errors go to stderr with exit status 2.
 *
 * Only little-endian messages are parsed: every broker benchmarked on x86
 * and arm64 forwards our little-endian messages unchanged and writes its
 * own in native order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Bounds. */
#define READ_CHUNK (256u * 1024u)        /* bytes read per wakeup per connection */
#define MAX_MESSAGE (128u * 1024u * 1024u) /* D-Bus spec: 2^27 bytes */
#define MAX_EVENTS 256                   /* epoll events per wakeup */
#define MAX_CONNS 20000                  /* connections one run may open */
#define AUTH_LINE_MAX 512                /* SASL reply line */
#define DRAIN_TIMEOUT_S 30.0             /* wait for outstanding replies after the window */
#define HANDSHAKE_BATCH 32               /* clients authenticating at once: below the 64
					    incomplete connections dbus-daemon's system bus
					    (and bootbus) accept */

/* Message types and flags (D-Bus specification, "Message Format"). */
enum { T_CALL = 1, T_RETURN = 2, T_ERROR = 3, T_SIGNAL = 4 };
enum { F_NO_REPLY = 0x1 };
enum {
	H_PATH = 1, H_INTERFACE = 2, H_MEMBER = 3, H_ERROR_NAME = 4,
	H_REPLY_SERIAL = 5, H_DESTINATION = 6, H_SENDER = 7, H_SIGNATURE = 8,
};

static const char BUS_NAME[] = "org.freedesktop.DBus";
static const char BUS_PATH[] = "/org/freedesktop/DBus";
static const char ECHO_NAME[] = "org.bootbus.Bench.Echo";
static const char BENCH_PATH[] = "/org/bootbus/Bench";
static const char BENCH_IFACE[] = "org.bootbus.Bench";
static const char MATCH_YES[] = "type='signal',interface='org.bootbus.Bench',member='Tick'";
static const char MATCH_NO[] = "type='signal',interface='org.bootbus.Bench',member='Other'";

/* ---------------------------------------------------------------- utils */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* ---------------------------------------------------------------- buffers */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + extra)
		cap *= 2;
	b->p = realloc(b->p, cap);
	if (!b->p)
		die("out of memory");
	b->cap = cap;
}

static void buf_put(struct buf *b, const void *d, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void buf_u8(struct buf *b, uint8_t v) { buf_put(b, &v, 1); }
static void buf_u32(struct buf *b, uint32_t v) { buf_put(b, &v, 4); }

/* Pads with zeros to `align`, counted from the message start `start`. */
static void buf_pad(struct buf *b, size_t start, size_t align)
{
	buf_reserve(b, align);
	while ((b->len - start) % align)
		b->p[b->len++] = 0;
}

static void buf_consume(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

/* ---------------------------------------------------------------- messages */

struct hdr {
	const char *path, *iface, *member, *dest, *sig;
	uint32_t reply_serial; /* 0: absent */
};

struct msg {
	uint8_t type, flags;
	uint32_t serial, reply_serial;
	const char *sender, *sig, *member, *error_name;
	const uint8_t *body;
	uint32_t body_len;
	size_t total;
};

static void put_field_str(struct buf *b, size_t start, uint8_t code, char type, const char *s)
{
	if (!s)
		return;
	size_t n = strlen(s);
	buf_pad(b, start, 8);
	const uint8_t head[4] = {code, 1, (uint8_t)type, 0};
	buf_put(b, head, 4);
	if (type == 'g') {
		buf_u8(b, (uint8_t)n);
	} else {
		buf_pad(b, start, 4);
		buf_u32(b, (uint32_t)n);
	}
	buf_put(b, s, n + 1);
}

/* Appends one little-endian message to b. */
static void put_msg(struct buf *b, uint8_t type, uint8_t flags, uint32_t serial,
		    const struct hdr *h, const void *body, uint32_t body_len)
{
	size_t start = b->len;
	const uint8_t fixed[4] = {'l', type, flags, 1};
	buf_put(b, fixed, 4);
	buf_u32(b, body_len);
	buf_u32(b, serial);
	buf_u32(b, 0); /* header fields length, patched below */
	put_field_str(b, start, H_PATH, 'o', h->path);
	put_field_str(b, start, H_INTERFACE, 's', h->iface);
	put_field_str(b, start, H_MEMBER, 's', h->member);
	put_field_str(b, start, H_DESTINATION, 's', h->dest);
	if (h->reply_serial) {
		buf_pad(b, start, 8);
		const uint8_t head[4] = {H_REPLY_SERIAL, 1, 'u', 0};
		buf_put(b, head, 4);
		buf_u32(b, h->reply_serial);
	}
	if (body_len)
		put_field_str(b, start, H_SIGNATURE, 'g', h->sig);
	uint32_t fields_len = (uint32_t)(b->len - start - 16);
	memcpy(b->p + start + 12, &fields_len, 4);
	buf_pad(b, start, 8);
	if (body_len)
		buf_put(b, body, body_len);
}

/*
 * Parses the message at p[0..n). Returns its total length, or 0 when more
 * bytes are needed. Dies on anything this program never expects to see.
 */
static size_t parse_msg(const uint8_t *p, size_t n, struct msg *m)
{
	if (n < 16)
		return 0;
	if (p[0] != 'l')
		die("only little-endian messages are supported (got byte %#x)", p[0]);
	uint32_t body_len = rd32(p + 4), fields_len = rd32(p + 12);
	if (fields_len > MAX_MESSAGE || body_len > MAX_MESSAGE)
		die("message too large");
	size_t body_off = align_up(16 + (size_t)fields_len, 8);
	size_t total = body_off + body_len;
	if (total > MAX_MESSAGE)
		die("message too large (%zu bytes)", total);
	if (n < total)
		return 0;
	memset(m, 0, sizeof(*m));
	m->type = p[1];
	m->flags = p[2];
	m->serial = rd32(p + 8);
	size_t pos = 16, end = 16 + fields_len;
	while (pos < end) {
		pos = align_up(pos, 8);
		if (pos + 4 > end || p[pos + 1] != 1)
			die("malformed header field");
		uint8_t code = p[pos];
		char type = (char)p[pos + 2];
		pos += 4;
		if (type == 's' || type == 'o') {
			pos = align_up(pos, 4);
			uint32_t len = rd32(p + pos);
			const char *s = (const char *)p + pos + 4;
			pos += 4 + (size_t)len + 1;
			if (code == H_SENDER)
				m->sender = s;
			else if (code == H_MEMBER)
				m->member = s;
			else if (code == H_ERROR_NAME)
				m->error_name = s;
		} else if (type == 'g') {
			uint8_t len = p[pos];
			if (code == H_SIGNATURE)
				m->sig = (const char *)p + pos + 1;
			pos += 1 + (size_t)len + 1;
		} else if (type == 'u') {
			pos = align_up(pos, 4);
			if (code == H_REPLY_SERIAL)
				m->reply_serial = rd32(p + pos);
			pos += 4;
		} else {
			die("unexpected header field type '%c'", type);
		}
	}
	if (pos > end)
		die("malformed header fields");
	m->body = p + body_off;
	m->body_len = body_len;
	m->total = total;
	return total;
}

/* The first string of a body whose signature starts with 's' (or ""). */
static const char *body_str(const struct msg *m)
{
	if (!m->sig || m->sig[0] != 's' || m->body_len < 5)
		return "";
	return (const char *)m->body + 4;
}

/* ---------------------------------------------------------------- connections */

enum role { R_IDLE, R_ECHO, R_CALLER, R_EMITTER, R_SUB_YES, R_SUB_NO, R_PROBER, R_CONTROL };

struct conn {
	int fd;
	enum role role;
	bool dirty, want_out, eof;
	struct buf in, out;
	uint32_t serial;
	uint64_t received;       /* messages of interest received */
	uint32_t inflight;       /* calls awaiting a reply */
	uint32_t last_call;      /* serial of the last call (rtt, prober) */
	double sent_at;          /* send time of last_call */
	char unique[256];
};

struct address {
	struct sockaddr_un sa;
	socklen_t len;
};

static int epfd = -1;
static struct conn **dirty_list;
static size_t n_dirty;

static void parse_address(const char *addr, struct address *a)
{
	memset(a, 0, sizeof(*a));
	a->sa.sun_family = AF_UNIX;
	const char *colon = strchr(addr, ':');
	if (!colon || strncmp(addr, "unix:", 5) != 0)
		die("unsupported address %s", addr);
	const char *p = colon + 1;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		bool abstract = strncmp(p, "abstract=", 9) == 0;
		if (strncmp(p, "path=", 5) == 0 || abstract) {
			const char *v = p + (abstract ? 9 : 5);
			size_t vn = n - (size_t)(v - p);
			if (vn + 2 > sizeof(a->sa.sun_path))
				die("socket path too long");
			/* The values we are given are never percent-escaped. */
			memcpy(a->sa.sun_path + (abstract ? 1 : 0), v, vn);
			/* path: the name and its nul; abstract: a leading nul and the name */
			a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + vn + 1);
			return;
		}
		p += n + (comma ? 1 : 0);
	}
	die("no path= or abstract= in %s", addr);
}

static int open_socket(const struct address *a, bool nonblock)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void write_all(int fd, const void *d, size_t n)
{
	const uint8_t *p = d;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("send: %s", strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

static size_t auth_request(char *out, size_t cap)
{
	char uid[32], hex[64];
	snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
	for (size_t i = 0; uid[i]; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char)uid[i]);
	int n = snprintf(out, cap, "%cAUTH EXTERNAL %s\r\n", 0, hex);
	return (size_t)n;
}

static void put_hello(struct conn *c)
{
	struct hdr h = {.path = BUS_PATH, .iface = BUS_NAME, .member = "Hello", .dest = BUS_NAME};
	put_msg(&c->out, T_CALL, 0, ++c->serial, &h, NULL, 0);
}

/* Body for signature "s". */
static size_t body_s(uint8_t *out, const char *s)
{
	uint32_t n = (uint32_t)strlen(s);
	memcpy(out, &n, 4);
	memcpy(out + 4, s, n + 1);
	return 4 + n + 1;
}

static uint32_t put_bus_call(struct conn *c, const char *member, const char *sig,
			     const uint8_t *body, size_t body_len)
{
	struct hdr h = {.path = BUS_PATH, .iface = BUS_NAME, .member = member, .dest = BUS_NAME,
			.sig = sig};
	put_msg(&c->out, T_CALL, 0, ++c->serial, &h, body, (uint32_t)body_len);
	return c->serial;
}

static uint32_t put_request_name(struct conn *c, const char *name)
{
	uint8_t body[300] = {0};
	size_t n = align_up(body_s(body, name), 4);
	uint32_t flags = 4; /* DBUS_NAME_FLAG_DO_NOT_QUEUE */
	memcpy(body + n, &flags, 4);
	return put_bus_call(c, "RequestName", "su", body, n + 4);
}

/*
 * Reads (blocking) until the reply to `serial` arrives; messages before it are
 * dropped. The reply stays first in c->in (parsed into *out) until drop_first().
 */
static void read_reply_blocking(struct conn *c, uint32_t serial, struct msg *out)
{
	for (;;) {
		size_t n;
		while ((n = parse_msg(c->in.p, c->in.len, out)) > 0) {
			bool reply = out->type == T_RETURN || out->type == T_ERROR;
			if (reply && out->reply_serial == serial) {
				if (out->type == T_ERROR)
					die("call %u failed: %s: %s", serial,
					    out->error_name ? out->error_name : "?", body_str(out));
				return;
			}
			buf_consume(&c->in, n);
		}
		buf_reserve(&c->in, READ_CHUNK);
		ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("connection closed while waiting for reply %u (%s)", serial,
			    r < 0 ? strerror(errno) : "EOF");
		c->in.len += (size_t)r;
	}
}

/* Drops the first message in c->in (the one read_reply_blocking returned). */
static void drop_first(struct conn *c)
{
	struct msg m;
	buf_consume(&c->in, parse_msg(c->in.p, c->in.len, &m));
}

static void flush_blocking(struct conn *c)
{
	write_all(c->fd, c->out.p, c->out.len);
	c->out.len = 0;
}

/* Reads one SASL line from the server and dies unless it starts with `want`. */
static void read_auth_line(int fd, const char *want)
{
	char line[AUTH_LINE_MAX];
	size_t n = 0;
	while (n < 2 || line[n - 2] != '\r' || line[n - 1] != '\n') {
		if (n == sizeof(line))
			die("SASL reply too long");
		ssize_t r = read(fd, line + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("connection closed during SASL");
		n += (size_t)r;
	}
	if (strncmp(line, want, strlen(want)) != 0)
		die("SASL: wanted %s, got %.*s", want, (int)(n - 2), line);
}

/* unixfd=1: negotiate fd passing, as sd-bus, GLib and libdbus do, so brokers read this
 * client the way they read those (with ancillary data). */
static bool negotiate_unix_fd;

static void read_auth_ok(int fd)
{
	read_auth_line(fd, "OK ");
	if (negotiate_unix_fd) {
		write_all(fd, "NEGOTIATE_UNIX_FD\r\n", 19);
		read_auth_line(fd, "AGREE_UNIX_FD");
	}
}

/* Connect, authenticate and Hello, all blocking; the socket ends up non-blocking. */
static struct conn *conn_open(const struct address *a, enum role role)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		die("out of memory");
	c->role = role;
	c->fd = open_socket(a, false);
	if (c->fd < 0)
		die("connect: %s", strerror(errno));
	char auth[128];
	write_all(c->fd, auth, auth_request(auth, sizeof(auth)));
	read_auth_ok(c->fd);
	buf_put(&c->out, "BEGIN\r\n", 7);
	put_hello(c);
	flush_blocking(c);
	struct msg m;
	read_reply_blocking(c, 1, &m);
	snprintf(c->unique, sizeof(c->unique), "%s", body_str(&m));
	drop_first(c);
	return c;
}

static void conn_call_blocking(struct conn *c, uint32_t serial)
{
	struct msg m;
	flush_blocking(c);
	read_reply_blocking(c, serial, &m);
	drop_first(c);
}

static void conn_watch(struct conn *c)
{
	int fl = fcntl(c->fd, F_GETFL);
	fcntl(c->fd, F_SETFL, fl | O_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

static void mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	dirty_list[n_dirty++] = c;
}

static void set_want_out(struct conn *c, bool want)
{
	if (c->want_out == want)
		return;
	c->want_out = want;
	struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
}

/* One send() per connection per loop iteration: the batching that keeps us cheap. */
static void conn_flush(struct conn *c)
{
	if (c->out.len) {
		ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			die("send: %s", strerror(errno));
		if (w > 0)
			buf_consume(&c->out, (size_t)w);
	}
	set_want_out(c, c->out.len > 0);
}

static void flush_dirty(void)
{
	for (size_t i = 0; i < n_dirty; i++) {
		dirty_list[i]->dirty = false;
		conn_flush(dirty_list[i]);
	}
	n_dirty = 0;
}

typedef void (*msg_handler)(struct conn *c, const struct msg *m);

static void conn_read(struct conn *c, msg_handler on_msg)
{
	buf_reserve(&c->in, READ_CHUNK);
	ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
	if (r < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		die("read: %s", strerror(errno));
	}
	if (r == 0) {
		c->eof = true;
		die("the bus closed a %s connection", c->unique);
	}
	c->in.len += (size_t)r;
	size_t off = 0, n;
	struct msg m;
	while ((n = parse_msg(c->in.p + off, c->in.len - off, &m)) > 0) {
		on_msg(c, &m);
		off += n;
	}
	buf_consume(&c->in, off);
}

/* Waits up to timeout_ms for events, handles them, then flushes all output. */
static void loop_once(int timeout_ms, msg_handler on_msg)
{
	struct epoll_event ev[MAX_EVENTS];
	int n = epoll_wait(epfd, ev, MAX_EVENTS, timeout_ms);
	if (n < 0 && errno != EINTR)
		die("epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		struct conn *c = ev[i].data.ptr;
		if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			conn_read(c, on_msg);
		if (ev[i].events & EPOLLOUT)
			mark_dirty(c);
	}
	flush_dirty();
}

/* ---------------------------------------------------------------- options */

struct opts {
	double seconds;
	unsigned callers, inflight, payload, subs_yes, subs_no, window, concurrency, count;
};

static void parse_opts(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){.seconds = 1.0, .callers = 4, .inflight = 32, .payload = 64,
			   .subs_yes = 8, .subs_no = 8, .window = 64, .concurrency = 8,
			   .count = 1000};
	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			die("bad option %s (want key=value)", argv[i]);
		*eq = 0;
		const char *k = argv[i], *v = eq + 1;
		if (!strcmp(k, "seconds"))
			o->seconds = atof(v);
		else if (!strcmp(k, "callers"))
			o->callers = (unsigned)atoi(v);
		else if (!strcmp(k, "inflight"))
			o->inflight = (unsigned)atoi(v);
		else if (!strcmp(k, "payload"))
			o->payload = (unsigned)atoi(v);
		else if (!strcmp(k, "subs_yes"))
			o->subs_yes = (unsigned)atoi(v);
		else if (!strcmp(k, "subs_no"))
			o->subs_no = (unsigned)atoi(v);
		else if (!strcmp(k, "window"))
			o->window = (unsigned)atoi(v);
		else if (!strcmp(k, "concurrency"))
			o->concurrency = (unsigned)atoi(v);
		else if (!strcmp(k, "count"))
			o->count = (unsigned)atoi(v);
		else if (!strcmp(k, "unixfd"))
			negotiate_unix_fd = atoi(v) != 0;
		else
			die("unknown option %s", k);
	}
	if (o->payload < 4)
		die("payload must be at least 4 bytes (the array length)");
	if (o->callers + o->subs_yes + o->subs_no + o->concurrency + o->count + 8 > MAX_CONNS)
		die("too many connections");
}

/* ---------------------------------------------------------------- run.py protocol */

static void say_ready(void)
{
	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof(line), stdin))
		die("stdin closed before go");
}

static void wait_for_eof(void)
{
	char line[64];
	while (fgets(line, sizeof(line), stdin))
		;
}

/* ---------------------------------------------------------------- echo + callers */

static uint8_t *payload_body;
static uint32_t payload_len;
static double deadline;
static bool stopping;
static uint64_t calls_done;
static double *latencies;
static size_t n_lat, cap_lat;

static void make_payload(unsigned size)
{
	payload_len = size;
	payload_body = malloc(size);
	if (!payload_body)
		die("out of memory");
	uint32_t n = size - 4;
	memcpy(payload_body, &n, 4);
	for (uint32_t i = 0; i < n; i++)
		payload_body[4 + i] = (uint8_t)i;
}

static void put_echo_call(struct conn *c)
{
	struct hdr h = {.path = BENCH_PATH, .iface = BENCH_IFACE, .member = "Echo",
			.dest = ECHO_NAME, .sig = "ay"};
	put_msg(&c->out, T_CALL, 0, ++c->serial, &h, payload_body, payload_len);
	c->inflight++;
	c->last_call = c->serial;
	c->sent_at = now_s();
	mark_dirty(c);
}

static void echo_reply(struct conn *c, const struct msg *m)
{
	if (m->type != T_CALL || (m->flags & F_NO_REPLY))
		return;
	struct hdr h = {.dest = m->sender, .reply_serial = m->serial, .sig = m->sig};
	put_msg(&c->out, T_RETURN, F_NO_REPLY, ++c->serial, &h, m->body, m->body_len);
	mark_dirty(c);
}

static void record_latency(double s)
{
	if (n_lat == cap_lat) {
		cap_lat = cap_lat ? cap_lat * 2 : 65536;
		latencies = realloc(latencies, cap_lat * sizeof(double));
		if (!latencies)
			die("out of memory");
	}
	latencies[n_lat++] = s;
}

static void caller_reply(struct conn *c, const struct msg *m)
{
	if (m->type == T_ERROR)
		die("echo call failed: %s: %s", m->error_name ? m->error_name : "?", body_str(m));
	if (m->type != T_RETURN)
		return;
	c->inflight--;
	calls_done++;
	if (m->reply_serial == c->last_call)
		record_latency(now_s() - c->sent_at);
	if (!stopping)
		put_echo_call(c);
}

static void on_msg_calls(struct conn *c, const struct msg *m)
{
	if (c->role == R_ECHO)
		echo_reply(c, m);
	else if (c->role == R_CALLER)
		caller_reply(c, m);
}

static struct conn *open_echo(const struct address *a)
{
	struct conn *echo = conn_open(a, R_ECHO);
	conn_call_blocking(echo, put_request_name(echo, ECHO_NAME));
	return echo;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static double percentile(double p)
{
	if (!n_lat)
		return 0;
	size_t i = (size_t)(p * (double)(n_lat - 1) + 0.5);
	return latencies[i];
}

static bool any_inflight(struct conn **cs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (cs[i]->inflight)
			return true;
	return false;
}

/* Runs callers until the deadline, then drains their outstanding calls. */
static void run_calls(struct conn **callers, unsigned n_callers, unsigned inflight)
{
	for (unsigned i = 0; i < n_callers; i++)
		for (unsigned k = 0; k < inflight; k++)
			put_echo_call(callers[i]);
	flush_dirty();
	double drain_end = 0;
	for (;;) {
		double t = now_s();
		if (!stopping && t >= deadline) {
			stopping = true;
			drain_end = t + DRAIN_TIMEOUT_S;
		}
		if (stopping && !any_inflight(callers, n_callers))
			break;
		if (stopping && t > drain_end)
			die("replies still outstanding %.0f s after the window", DRAIN_TIMEOUT_S);
		loop_once(stopping ? 100 : 50, on_msg_calls);
	}
}

static void mode_rtt(const struct address *a, const struct opts *o)
{
	make_payload(o->payload);
	struct conn *echo = open_echo(a);
	struct conn *caller = conn_open(a, R_CALLER);
	conn_watch(echo);
	conn_watch(caller);
	say_ready();
	double t0 = now_s(), c0 = cpu_s();
	deadline = t0 + o->seconds;
	run_calls(&caller, 1, 1);
	double elapsed = now_s() - t0, ccpu = cpu_s() - c0;
	qsort(latencies, n_lat, sizeof(double), cmp_double);
	double sum = 0;
	for (size_t i = 0; i < n_lat; i++)
		sum += latencies[i];
	printf("{\"calls\": %" PRIu64 ", \"messages\": %" PRIu64 ", \"elapsed_s\": %.6f, "
	       "\"client_cpu_s\": %.6f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"mean_us\": %.2f}\n",
	       calls_done, calls_done * 2, elapsed, ccpu, percentile(0.50) * 1e6,
	       percentile(0.99) * 1e6, n_lat ? sum / (double)n_lat * 1e6 : 0.0);
}

static void mode_tput(const struct address *a, const struct opts *o)
{
	make_payload(o->payload);
	struct conn *echo = open_echo(a);
	struct conn **callers = calloc(o->callers, sizeof(*callers));
	for (unsigned i = 0; i < o->callers; i++)
		callers[i] = conn_open(a, R_CALLER);
	conn_watch(echo);
	for (unsigned i = 0; i < o->callers; i++)
		conn_watch(callers[i]);
	say_ready();
	double t0 = now_s(), c0 = cpu_s();
	deadline = t0 + o->seconds;
	run_calls(callers, o->callers, o->inflight);
	double elapsed = now_s() - t0, ccpu = cpu_s() - c0;
	printf("{\"calls\": %" PRIu64 ", \"messages\": %" PRIu64 ", \"elapsed_s\": %.6f, "
	       "\"client_cpu_s\": %.6f}\n",
	       calls_done, calls_done * 2, elapsed, ccpu);
}

/* ---------------------------------------------------------------- fanout */

static uint64_t signals_sent;
static uint64_t stray_deliveries;

static void on_msg_fanout(struct conn *c, const struct msg *m)
{
	if (m->type != T_SIGNAL || !m->member || strcmp(m->member, "Tick") != 0)
		return;
	if (c->role == R_SUB_YES)
		c->received++;
	else
		stray_deliveries++;
}

static uint64_t min_received(struct conn **subs, unsigned n)
{
	uint64_t lo = UINT64_MAX;
	for (unsigned i = 0; i < n; i++)
		if (subs[i]->received < lo)
			lo = subs[i]->received;
	return lo;
}

static void mode_fanout(const struct address *a, const struct opts *o)
{
	make_payload(o->payload);
	struct conn *emitter = conn_open(a, R_EMITTER);
	unsigned n_subs = o->subs_yes + o->subs_no;
	struct conn **subs = calloc(n_subs, sizeof(*subs));
	uint8_t body[512];
	for (unsigned i = 0; i < n_subs; i++) {
		bool yes = i < o->subs_yes;
		subs[i] = conn_open(a, yes ? R_SUB_YES : R_SUB_NO);
		size_t n = body_s(body, yes ? MATCH_YES : MATCH_NO);
		conn_call_blocking(subs[i], put_bus_call(subs[i], "AddMatch", "s", body, n));
	}
	conn_watch(emitter);
	for (unsigned i = 0; i < n_subs; i++)
		conn_watch(subs[i]);
	say_ready();
	double t0 = now_s(), c0 = cpu_s();
	deadline = t0 + o->seconds;
	struct hdr h = {.path = BENCH_PATH, .iface = BENCH_IFACE, .member = "Tick", .sig = "ay"};
	double drain_end = 0;
	for (;;) {
		double t = now_s();
		if (!stopping && t >= deadline) {
			stopping = true;
			drain_end = t + DRAIN_TIMEOUT_S;
		}
		uint64_t lo = min_received(subs, o->subs_yes);
		if (stopping && lo == signals_sent)
			break;
		if (stopping && t > drain_end)
			die("signals still undelivered %.0f s after the window", DRAIN_TIMEOUT_S);
		if (!stopping) {
			/* Top up the window in one batch: the bus sees one write. */
			while (signals_sent - lo < o->window) {
				put_msg(&emitter->out, T_SIGNAL, F_NO_REPLY, ++emitter->serial, &h,
					payload_body, payload_len);
				signals_sent++;
			}
			mark_dirty(emitter);
			flush_dirty();
		}
		loop_once(stopping ? 100 : 50, on_msg_fanout);
	}
	double elapsed = now_s() - t0, ccpu = cpu_s() - c0;
	if (stray_deliveries)
		die("%" PRIu64 " signals reached non-matching subscribers", stray_deliveries);
	printf("{\"signals\": %" PRIu64 ", \"deliveries\": %" PRIu64 ", \"elapsed_s\": %.6f, "
	       "\"client_cpu_s\": %.6f}\n",
	       signals_sent, signals_sent * o->subs_yes, elapsed, ccpu);
}

/* ---------------------------------------------------------------- connect */

enum slot_state { S_AUTH, S_HELLO };

struct slot {
	struct conn c; /* first: epoll data points at the slot and at c alike */
	enum slot_state state;
	bool open;
};

static uint64_t connects_done;

static void slot_start(struct slot *s, const struct address *a)
{
	s->c.fd = open_socket(a, true);
	if (s->c.fd < 0) {
		if (errno == EAGAIN) /* backlog full: retried on the next iteration */
			return;
		die("connect: %s", strerror(errno));
	}
	s->open = true;
	s->state = S_AUTH;
	s->c.in.len = 0;
	s->c.out.len = 0;
	s->c.serial = 0;
	s->c.want_out = false;
	char auth[128];
	buf_put(&s->c.out, auth, auth_request(auth, sizeof(auth)));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->c.fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	conn_flush(&s->c);
}

static void slot_close(struct slot *s)
{
	close(s->c.fd); /* also removes it from the epoll set */
	s->open = false;
	connects_done++;
}

static void slot_readable(struct slot *s)
{
	struct conn *c = &s->c;
	buf_reserve(&c->in, READ_CHUNK);
	ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0)
		die("the bus closed a connection during %s", s->state == S_AUTH ? "SASL" : "Hello");
	c->in.len += (size_t)r;
	if (s->state == S_AUTH) {
		uint8_t *crlf = memmem(c->in.p, c->in.len, "\r\n", 2);
		if (!crlf)
			return;
		if (c->in.len < 3 || memcmp(c->in.p, "OK ", 3) != 0)
			die("SASL EXTERNAL rejected: %.*s", (int)(crlf - c->in.p), c->in.p);
		buf_consume(&c->in, (size_t)(crlf + 2 - c->in.p));
		buf_put(&c->out, "BEGIN\r\n", 7);
		put_hello(c);
		s->state = S_HELLO;
		conn_flush(c);
		return;
	}
	struct msg m;
	size_t off = 0, n;
	while ((n = parse_msg(c->in.p + off, c->in.len - off, &m)) > 0) {
		if (m.reply_serial == 1 && m.type == T_RETURN) {
			slot_close(s);
			return;
		}
		if (m.reply_serial == 1 && m.type == T_ERROR)
			die("Hello failed: %s", m.error_name ? m.error_name : "?");
		off += n;
	}
	buf_consume(&c->in, off);
}

static void mode_connect(const struct address *a, const struct opts *o)
{
	struct slot *slots = calloc(o->concurrency, sizeof(*slots));
	if (!slots)
		die("out of memory");
	say_ready();
	double t0 = now_s(), c0 = cpu_s();
	deadline = t0 + o->seconds;
	double drain_end = deadline + DRAIN_TIMEOUT_S;
	for (;;) {
		double t = now_s();
		bool busy = false;
		for (unsigned i = 0; i < o->concurrency; i++) {
			if (!slots[i].open && t < deadline)
				slot_start(&slots[i], a);
			busy |= slots[i].open;
		}
		if (!busy && t >= deadline)
			break;
		if (t > drain_end)
			die("connections still unfinished %.0f s after the window", DRAIN_TIMEOUT_S);
		struct epoll_event ev[MAX_EVENTS];
		int n = epoll_wait(epfd, ev, MAX_EVENTS, 50);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct slot *s = ev[i].data.ptr;
			if (!s->open)
				continue;
			if (ev[i].events & EPOLLOUT)
				conn_flush(&s->c);
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				slot_readable(s);
		}
	}
	double elapsed = now_s() - t0, ccpu = cpu_s() - c0;
	printf("{\"connections\": %" PRIu64 ", \"elapsed_s\": %.6f, \"client_cpu_s\": %.6f}\n",
	       connects_done, elapsed, ccpu);
}

/* ---------------------------------------------------------------- many clients */

/*
 * Opens `count` clients, each owning org.bootbus.Bench.C<i>. Handshakes are
 * pipelined in batches of HANDSHAKE_BATCH: the batch's SASL lines, then its
 * BEGIN+Hello+RequestName, then its replies, so the bus works on many at
 * once without exceeding its limit on unauthenticated connections.
 */
static void open_client_batch(const struct address *a, struct conn **cs, unsigned first,
			      unsigned end)
{
	char auth[128], name[64];
	size_t auth_len = auth_request(auth, sizeof(auth));
	for (unsigned i = first; i < end; i++) {
		cs[i] = calloc(1, sizeof(**cs));
		if (!cs[i])
			die("out of memory");
		cs[i]->role = R_IDLE;
		cs[i]->fd = open_socket(a, false);
		if (cs[i]->fd < 0)
			die("connect (client %u): %s", i, strerror(errno));
		write_all(cs[i]->fd, auth, auth_len);
	}
	for (unsigned i = first; i < end; i++) {
		read_auth_ok(cs[i]->fd);
		buf_put(&cs[i]->out, "BEGIN\r\n", 7);
		put_hello(cs[i]);
		snprintf(name, sizeof(name), "org.bootbus.Bench.C%u", i);
		put_request_name(cs[i], name);
		flush_blocking(cs[i]);
	}
	for (unsigned i = first; i < end; i++) {
		struct msg m;
		read_reply_blocking(cs[i], 1, &m);
		snprintf(cs[i]->unique, sizeof(cs[i]->unique), "%s", body_str(&m));
		drop_first(cs[i]);
		read_reply_blocking(cs[i], 2, &m);
		uint32_t result = m.body_len >= 4 ? rd32(m.body) : 0;
		if (result != 1) /* DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER */
			die("client %u did not become primary owner (reply %u)", i, result);
		drop_first(cs[i]);
	}
}

static struct conn **open_clients(const struct address *a, unsigned count)
{
	struct conn **cs = calloc(count ? count : 1, sizeof(*cs));
	if (!cs)
		die("out of memory");
	for (unsigned first = 0; first < count; first += HANDSHAKE_BATCH)
		open_client_batch(a, cs, first,
				  first + HANDSHAKE_BATCH < count ? first + HANDSHAKE_BATCH : count);
	return cs;
}

static void mode_clients(const struct address *a, const struct opts *o)
{
	double t0 = now_s();
	open_clients(a, o->count);
	double setup = now_s() - t0;
	say_ready();
	printf("{\"clients\": %u, \"setup_s\": %.6f}\n", o->count, setup);
}

/* ---------------------------------------------------------------- re-exec pause */

static struct conn *control_conn;
static uint32_t reexec_serial;
static double reexec_replied_at;
static char reexec_error[512];

static void on_msg_reexec(struct conn *c, const struct msg *m)
{
	if (c->role == R_ECHO) {
		echo_reply(c, m);
	} else if (c->role == R_PROBER) {
		if (m->type == T_ERROR)
			die("probe call failed: %s", m->error_name ? m->error_name : "?");
		if (m->type == T_RETURN && m->reply_serial == c->last_call) {
			c->inflight--;
			record_latency(now_s() - c->sent_at);
		}
	} else if (c->role == R_CONTROL && m->reply_serial == reexec_serial &&
		   (m->type == T_RETURN || m->type == T_ERROR)) {
		reexec_replied_at = now_s();
		if (m->type == T_ERROR)
			snprintf(reexec_error, sizeof(reexec_error), "%s: %s",
				 m->error_name ? m->error_name : "?", body_str(m));
	}
}

static unsigned clients_alive(struct conn **cs, unsigned n)
{
	unsigned alive = 0;
	uint8_t scratch[4096];
	for (unsigned i = 0; i < n; i++) {
		for (;;) {
			ssize_t r = recv(cs[i]->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
			if (r > 0)
				continue; /* NameAcquired and the like */
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				alive++;
			break;
		}
	}
	return alive;
}

static void mode_reexec(const struct address *a, const struct opts *o)
{
	make_payload(o->payload);
	struct conn **cs = open_clients(a, o->count);
	struct conn *echo = open_echo(a);
	struct conn *prober = conn_open(a, R_PROBER);
	control_conn = conn_open(a, R_CONTROL);
	conn_watch(echo);
	conn_watch(prober);
	conn_watch(control_conn);
	say_ready();
	double t0 = now_s(), sent_at = 0, end = t0 + o->seconds;
	double baseline_end = t0 + 0.2;
	size_t baseline_n = 0;
	for (;;) {
		double t = now_s();
		if (!sent_at && t >= baseline_end) {
			baseline_n = n_lat;
			struct hdr h = {.path = "/org/bootbus/Supervisor1",
					.iface = "org.bootbus.Supervisor1", .member = "Reexec",
					.dest = "org.bootbus"};
			put_msg(&control_conn->out, T_CALL, 0, ++control_conn->serial, &h, NULL, 0);
			reexec_serial = control_conn->serial;
			mark_dirty(control_conn);
			sent_at = now_s();
		}
		if (reexec_error[0])
			break;
		if (reexec_replied_at && t > reexec_replied_at + 0.5 && t > sent_at + 0.5 &&
		    !prober->inflight)
			break;
		if (t > end)
			die("Reexec did not complete within %.1f s", o->seconds);
		if (!prober->inflight) {
			/* One sequential probe through the bus, like rtt. */
			put_echo_call(prober);
		}
		loop_once(10, on_msg_reexec);
	}
	if (reexec_error[0]) {
		printf("{\"skipped\": \"Reexec failed: ");
		for (const char *p = reexec_error; *p; p++)
			if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
				putchar(*p);
		printf("\"}\n");
		return;
	}
	/* The pause is the slowest probe that overlapped the re-exec. */
	double pause = 0, base_max = 0;
	for (size_t i = 0; i < n_lat; i++) {
		if (i < baseline_n && latencies[i] > base_max)
			base_max = latencies[i];
		if (i >= baseline_n && latencies[i] > pause)
			pause = latencies[i];
	}
	unsigned alive = clients_alive(cs, o->count);
	printf("{\"pause_ms\": %.3f, \"reply_ms\": %.3f, \"baseline_max_ms\": %.3f, "
	       "\"probes\": %zu, \"clients\": %u, \"clients_alive\": %u}\n",
	       pause * 1e3, (reexec_replied_at - sent_at) * 1e3, base_max * 1e3, n_lat,
	       o->count, alive);
}

/* ---------------------------------------------------------------- main */

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3)
		die("usage: loadgen rtt|tput|fanout|connect|clients|reexec ADDRESS [key=value ...]");
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct address a;
	parse_address(argv[2], &a);
	struct opts o;
	parse_opts(argc - 3, argv + 3, &o);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	dirty_list = calloc(MAX_CONNS, sizeof(*dirty_list));
	if (epfd < 0 || !dirty_list)
		die("setup failed");
	const char *mode = argv[1];
	if (!strcmp(mode, "rtt"))
		mode_rtt(&a, &o);
	else if (!strcmp(mode, "tput"))
		mode_tput(&a, &o);
	else if (!strcmp(mode, "fanout"))
		mode_fanout(&a, &o);
	else if (!strcmp(mode, "connect"))
		mode_connect(&a, &o);
	else if (!strcmp(mode, "clients"))
		mode_clients(&a, &o);
	else if (!strcmp(mode, "reexec"))
		mode_reexec(&a, &o);
	else
		die("unknown mode %s", mode);
	fflush(stdout);
	wait_for_eof();
	return 0;
}
