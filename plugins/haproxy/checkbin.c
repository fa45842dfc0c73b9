/* checkbin.c - --check-config's `haproxy -c` of the binary and the
 * includes (hx_check_binary): blocking, with a time limit, since
 * validate runs off the loop; what haproxy says first when it refuses. */
#include "hx.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int hx_check_binary(const regent_host *h, const char *bin, const char *const *inc, size_t ninc,
                    const char *global, uint64_t timeout_ms, char *why, size_t whylen)
{
	const char *td = getenv("TMPDIR");
	char *tmp = h->xasprintf("%s/regent-haproxy-check-XXXXXX", td && *td ? td : "/tmp");
	int fd = mkstemp(tmp);
	if (fd < 0 || write(fd, global, strlen(global)) != (ssize_t)strlen(global)) {
		snprintf(why, whylen, "cannot write a temporary file %s: %s", tmp, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(tmp);
		return 0; /* not haproxy's fault: the real check runs at start */
	}
	close(fd);
	char **argv = h->xcalloc(6 + 2 * ninc, sizeof(*argv));
	size_t n = 0;
	argv[n++] = (char *)bin;
	argv[n++] = "-c";
	for (size_t i = 0; i < ninc; i++) {
		argv[n++] = "-f";
		argv[n++] = (char *)inc[i];
	}
	argv[n++] = "-f";
	argv[n++] = tmp;
	int pfd[2];
	int rc = 0;
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		goto out;
	}
	int pid = 0;
	rc = hx_process_start(h, argv, NULL, pfd[1], &pid); /* no fork: see proc.c */
	if (rc < 0) {
		snprintf(why, whylen, "%s -c with the includes: cannot run %s: %s", bin, bin,
		         strerror(-rc));
		close(pfd[0]);
		close(pfd[1]);
		goto out;
	}
	close(pfd[1]);
	char out[2048];
	size_t olen = 0;
	uint64_t deadline = uv_hrtime() / 1000000 + timeout_ms;
	for (;;) {
		uint64_t now = uv_hrtime() / 1000000;
		if (now >= deadline) {
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
		int pr = poll(&pf, 1, (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		ssize_t r = read(pfd[0], out + olen, sizeof(out) - 1 - olen);
		if (r <= 0)
			break;
		olen += (size_t)r;
		if (olen >= sizeof(out) - 1)
			olen = sizeof(out) - 1; /* keep reading to EOF, keep the start */
	}
	out[olen] = '\0';
	close(pfd[0]);
	int status = -1, sig = 0;
	h->process_reap(pid, true, &status, &sig);
	int code = status >= 0 ? status : 128 + sig;
	if (code == 0 || code == 2)
		goto out;
	/* The first line that says something (not the NOTICE banner). */
	char *line = out, *best = NULL;
	while (line && *line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!best && *line && !strstr(line, "[NOTICE]"))
			best = line;
		line = nl ? nl + 1 : NULL;
	}
	if (code == 127)
		rc = -ENOENT;
	else
		rc = -EINVAL;
	snprintf(why, whylen, "%s -c with the includes%s: %.300s", bin,
	         code == 127 ? "" : " refused the configuration",
	         best ? best : (code == 137 ? "timed out" : "no output"));
out:
	unlink(tmp);
	free(tmp);
	free(argv);
	return rc;
}

