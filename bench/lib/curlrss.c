/* curlrss.c - what linking libcurl costs a process in resident memory (docs/benchmarks.md,
 * "File-backed, session 9"): prints VmRSS, RssAnon, RssFile and the Rss of the main
 * libraries' mappings.  Not built by CMake; by hand:
 *   cc -O1 -Wall -Wextra -o curlrss bench/lib/curlrss.c -lcurl    (or libcurl-gnutls.so.4)
 *   ./curlrss MODE [URL]
 * MODE 0: no curl call; 1: curl_global_init(DEFAULT); 2: + one easy_perform of URL (a
 * loopback server); 3: curl_global_init(CURL_GLOBAL_NOTHING) + easy_perform. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t sink(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static void show(const char *what)
{
	char line[512], name[400] = "";
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS", 5) || !strncmp(line, "RssAnon", 7) || !strncmp(line, "RssFile", 7))
			printf("%s %s", what, line);
	fclose(f);
	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	long tot[8] = {0};
	const char *libs[] = {"libcrypto", "libssl", "libgnutls", "libcurl", "libc.so", "libp11", "libkrb5", "other"};
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && strchr(line, ' ')) {
			char *sl = strrchr(line, ' ');
			snprintf(name, sizeof(name), "%s", sl + 1);
			continue;
		}
		long kb;
		if (sscanf(line, "Rss: %ld kB", &kb) == 1 && strchr(name, '/')) {
			int i;
			for (i = 0; i < 7 && !strstr(name, libs[i]); i++)
				;
			tot[i] += kb;
		}
	}
	fclose(f);
	for (int i = 0; i < 8; i++)
		printf("%s   %-10s %5ld kB\n", what, libs[i], tot[i]);
}

int main(int argc, char **argv)
{
	if (argc < 2 || (atoi(argv[1]) >= 2 && argc < 3)) {
		fprintf(stderr, "usage: curlrss MODE [URL]\n");
		return 2;
	}
	int mode = atoi(argv[1]);
	if (mode == 1 || mode == 2)
		curl_global_init(CURL_GLOBAL_DEFAULT);
	if (mode == 3)
		curl_global_init(CURL_GLOBAL_NOTHING);
	if (mode >= 2) {
		CURL *c = curl_easy_init();
		curl_easy_setopt(c, CURLOPT_URL, argv[2]);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
		curl_easy_perform(c);
		curl_easy_cleanup(c);
	}
	show(argv[1]);
	return 0;
}
