/* test_listener.c - unit tests of the stats sink's listening sockets
 * (plugins/stats/listener.c): a second instance on the same address gets
 * the same socket (one accept queue: a connection queued before the first
 * instance lets go is accepted by the second), the port closes when the
 * last instance lets go, another socket on the address is refused with
 * EADDRINUSE, port 0 is never shared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* 127.0.0.1 and a port that was free a moment ago. */
static socklen_t free_addr(struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	socklen_t len = sizeof(*a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)a, &len), 0);
	close(fd);
	return sizeof(*a);
}

static int connect_to(const struct sockaddr_storage *ss)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	if (connect(fd, (const struct sockaddr *)ss, sizeof(struct sockaddr_in)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static ino_t inode(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_ino;
}

static void test_shared_queue(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len = free_addr(&ss);
	int a = -1, b = -1;
	regent_stats_listener *la = NULL, *lb = NULL;
	assert_int_equal(regent_stats_listen(&ss, len, &a, &la), 0);
	assert_int_equal(regent_stats_listeners(), 1);
	/* the reload's new instance, same address: the same socket */
	assert_int_equal(regent_stats_listen(&ss, len, &b, &lb), 0);
	assert_ptr_equal(la, lb);
	assert_int_not_equal(a, b);
	assert_true(inode(a) == inode(b));
	assert_int_equal(regent_stats_listeners(), 1);
	/* a client queued while the old instance still listens ... */
	int c = connect_to(&ss);
	assert_true(c >= 0);
	/* ... the old instance goes: the connection is still there for the new one */
	close(a);
	regent_stats_unlisten(la);
	assert_int_equal(regent_stats_listeners(), 1);
	int got = accept(b, NULL, NULL);
	assert_true(got >= 0);
	assert_int_equal(write(c, "x", 1), 1);
	char ch = 0;
	assert_int_equal(read(got, &ch, 1), 1);
	assert_int_equal(ch, 'x');
	close(got);
	close(c);
	/* the last one goes: the port closes */
	close(b);
	regent_stats_unlisten(lb);
	assert_int_equal(regent_stats_listeners(), 0);
	c = connect_to(&ss);
	assert_int_equal(c, -1);
	assert_int_equal(errno, ECONNREFUSED);
}

static void test_someone_else(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len = free_addr(&ss);
	int other = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(other >= 0);
	assert_int_equal(bind(other, (struct sockaddr *)&ss, len), 0);
	assert_int_equal(listen(other, 8), 0);
	int fd = -1;
	regent_stats_listener *l = NULL;
	/* a listener of this process that is not the plugin's is not shared */
	assert_int_equal(regent_stats_listen(&ss, len, &fd, &l), -EADDRINUSE);
	assert_int_equal(fd, -1);
	assert_null(l);
	assert_int_equal(regent_stats_listeners(), 0);
	close(other);
	/* free again: bound */
	assert_int_equal(regent_stats_listen(&ss, len, &fd, &l), 0);
	close(fd);
	regent_stats_unlisten(l);
	assert_int_equal(regent_stats_listeners(), 0);
	regent_stats_unlisten(NULL); /* nothing */
}

static void test_port_zero(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len = free_addr(&ss);
	((struct sockaddr_in *)&ss)->sin_port = 0;
	int a = -1, b = -1;
	regent_stats_listener *la = NULL, *lb = NULL;
	assert_int_equal(regent_stats_listen(&ss, len, &a, &la), 0);
	assert_int_equal(regent_stats_listen(&ss, len, &b, &lb), 0);
	assert_ptr_not_equal(la, lb);
	assert_true(inode(a) != inode(b));
	assert_int_equal(regent_stats_listeners(), 2);
	close(a);
	close(b);
	regent_stats_unlisten(la);
	regent_stats_unlisten(lb);
	assert_int_equal(regent_stats_listeners(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shared_queue),
		cmocka_unit_test(test_someone_else),
		cmocka_unit_test(test_port_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
