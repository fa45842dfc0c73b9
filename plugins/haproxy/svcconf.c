/* svcconf.c - the haproxy sink's per-service settings: a [service NAME]
 * section read into the listen's settings (validate() and the model share
 * it), and the check that a listener's port can be bound the way haproxy
 * binds it, before a new listen enters a candidate. */
#include "model.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int hx_read_settings(regent_ctx *ctx, const regent_host *h, const char *name, svc_settings *st,
                     char *why, size_t whylen)
{
	memset(st, 0, sizeof(*st));
	st->srvopts.h = h;
	st->opts.weight = 1;
	const char *mode = h->service_string(ctx, name, "mode");
	if (mode && strcmp(mode, "tcp") != 0 && strcmp(mode, "http") != 0) {
		snprintf(why, whylen, "[service %s] mode: must be tcp or http, got \"%.40s\"", name, mode);
		st->bad_key = "mode";
		return -EINVAL;
	}
	st->c.name = name;
	st->c.http = mode && strcmp(mode, "http") == 0;
	const char *check = h->service_string(ctx, name, "check");
	if (check && check[0]) {
		if (!hx_valid_check_path(check)) {
			snprintf(why, whylen,
			         "[service %s] check: \"%.60s\" is not a path (/ then letters, digits and "
			         "._~!&()*+,;=:@%%/?-)",
			         name, check);
			st->bad_key = "check";
			return -EINVAL;
		}
		st->c.check_path = check;
	}
	const char *bal = h->service_string(ctx, name, "balance");
	if (bal && !hx_valid_balance(bal)) {
		snprintf(why, whylen,
		         "[service %s] balance: \"%.40s\" is not one of roundrobin, static-rr, leastconn, "
		         "first, source, random",
		         name, bal);
		st->bad_key = "balance";
		return -EINVAL;
	}
	st->c.balance = bal ? bal : "roundrobin";
	if (h->service_is_set(ctx, name, "maxconn"))
		st->c.maxconn = h->service_int(ctx, name, "maxconn");
	st->slots = h->service_is_set(ctx, name, "slots") ? h->service_int(ctx, name, "slots") : 0;
	st->c.retries = h->service_is_set(ctx, name, "retries") ? h->service_int(ctx, name, "retries")
	                                                        : -1;
	if (h->service_is_set(ctx, name, "server_options")) {
		/* LIST values read as text: split on commas like the core does;
		 * hx_server_options() splits each item on every whitespace byte
		 * and refuses control bytes. */
		const char *raw = h->service_string(ctx, name, "server_options");
		char *copy = h->xstrdup(raw ? raw : ""), *save = NULL;
		const char *items[64];
		size_t nopts = 0;
		int rc = 0;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (nopts == 64) {
				snprintf(why, whylen, "more than 64 server options");
				rc = -EINVAL;
				break;
			}
			items[nopts++] = t;
		}
		hx_buf tmp = {.h = h};
		if (rc == 0)
			rc = hx_server_options_info(items, nopts, &tmp, &st->opts, why, whylen);
		if (rc == 0)
			hx_buf_puts(&st->srvopts, hx_buf_str(&tmp));
		hx_buf_free(&tmp);
		free(copy);
		if (rc < 0) {
			char inner[256];
			snprintf(inner, sizeof(inner), "%s", why);
			snprintf(why, whylen, "[service %s] server_options: %s", name, inner);
			st->bad_key = "server_options";
			hx_buf_free(&st->srvopts);
			return rc;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Binding test                                                       */
/* ------------------------------------------------------------------ */

int hx_bind_test(const char *bind_addr, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (!bind_addr || strcmp(bind_addr, "*") == 0 || !strchr(bind_addr, ':')) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (bind_addr && strcmp(bind_addr, "*") != 0 &&
		    inet_pton(AF_INET, bind_addr, &a->sin_addr) != 1)
			return -EINVAL;
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, bind_addr, &a->sin6_addr) != 1)
			return -EINVAL;
		len = sizeof(*a);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* What haproxy sets on its listeners: a port its own (older) worker
	 * holds binds again; one held by any other socket does not. */
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef SO_REUSEPORT
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
#endif
	int rc = bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
	close(fd); /* never listens: nothing is held */
	return rc;
}

