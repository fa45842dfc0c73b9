/* loader.c - finds, opens and checks plugin shared objects.  Every
 * refusal names the file and the reason.  Loaded plugins are cached and
 * reference-counted; they are only unloaded once nothing (config, running
 * instance, pending libuv callback) can still point into them. */
#include "loader.h"
#include "config.h"
#include "util.h"
#include "build_config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static regent_loaded_plugin *loaded;

/* The smallest descriptor major 1 accepts: 1.0's, every field up to kind_ops. */
#define REGENT_PLUGIN_MIN_SIZE REGENT_PLUGIN_SIZE_1_0
/* 1.0's regent_config_key: every field up to description. */
#define REGENT_KEY_MIN_SIZE (offsetof(regent_config_key, description) + sizeof(const char *))

/* True when the descriptor (of d->size bytes) has the field at off of len. */
static bool desc_has(const regent_plugin *d, size_t off, size_t len)
{
	return d->size >= off + len;
}
#define DESC_HAS(d, f) desc_has((d), offsetof(regent_plugin, f), sizeof((d)->f))

/* The plugin's key stride: its key_size (ABI 1.4), else 1.0's. */
static size_t key_stride(const regent_plugin *d)
{
	return DESC_HAS(d, key_size) ? d->key_size : sizeof(regent_config_key);
}

/* True when this process is the regent binary of the build tree it was
 * built in (not an installed copy): it then loads the plugins built beside
 * it, so that the README's commands work from a build tree as written. */
static bool running_from_build_tree(void)
{
	char self[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return false;
	self[n] = '\0';
	if (!realpath(REGENT_BUILD_BIN, build))
		return false;
	return strcmp(self, build) == 0;
}

const char *regent_default_plugin_dir(void)
{
	const char *env = getenv("REGENT_PLUGIN_DIR");
	if (env && env[0])
		return env;
	return running_from_build_tree() ? REGENT_BUILD_PLUGIN_DIR : REGENT_DEFAULT_PLUGIN_DIR;
}

static int check_desc(const char *path, const regent_plugin *d, const char *expect_name,
                      int expected_kind, char *err, size_t errlen)
{
	if (d->abi_major != REGENT_ABI_MAJOR) {
		snprintf(err, errlen,
		         "%s: built for plugin ABI %u.%u, this regent supports ABI %u (rebuild the "
		         "plugin against this regent's plugin.h)",
		         path, d->abi_major, d->abi_minor, REGENT_ABI_MAJOR);
		return -1;
	}
	if (d->abi_minor > REGENT_ABI_MINOR) {
		snprintf(err, errlen,
		         "%s: needs plugin ABI %u.%u but this regent provides %u.%u (upgrade regent)",
		         path, d->abi_major, d->abi_minor, REGENT_ABI_MAJOR, REGENT_ABI_MINOR);
		return -1;
	}
	if (d->size < REGENT_PLUGIN_MIN_SIZE) {
		snprintf(err, errlen, "%s: descriptor is %zu bytes, ABI %u needs at least %zu", path,
		         d->size, REGENT_ABI_MAJOR, (size_t)REGENT_PLUGIN_MIN_SIZE);
		return -1;
	}
	if (DESC_HAS(d, key_size) && d->key_size < REGENT_KEY_MIN_SIZE) {
		snprintf(err, errlen, "%s: key_size is %zu bytes, ABI %u needs at least %zu", path,
		         d->key_size, REGENT_ABI_MAJOR, (size_t)REGENT_KEY_MIN_SIZE);
		return -1;
	}
	if (!d->name || (expect_name && strcmp(d->name, expect_name) != 0)) {
		snprintf(err, errlen, "%s: plugin calls itself \"%s\", expected \"%s\"", path,
		         d->name ? d->name : "(null)", expect_name ? expect_name : "?");
		return -1;
	}
	if (d->kind != REGENT_KIND_SOURCE && d->kind != REGENT_KIND_STORE &&
	    d->kind != REGENT_KIND_SINK) {
		snprintf(err, errlen, "%s: unknown plugin kind %d", path, (int)d->kind);
		return -1;
	}
	if (expected_kind && (int)d->kind != expected_kind) {
		snprintf(err, errlen, "%s: is a %s plugin, not a %s", path, regent_kind_name(d->kind),
		         regent_kind_name(expected_kind));
		return -1;
	}
	const regent_plugin_ops *ops = d->ops;
	if (!ops || ops->size < offsetof(regent_plugin_ops, destroy) + sizeof(void *) ||
	    !ops->create || !ops->destroy) {
		snprintf(err, errlen, "%s: incomplete ops table (create and destroy are required)",
		         path);
		return -1;
	}
	bool ok = false;
	switch (d->kind) {
	case REGENT_KIND_SOURCE:
		ok = d->source_ops && d->source_ops->size >= sizeof(size_t);
		break;
	case REGENT_KIND_STORE:
		ok = d->store_ops &&
		     d->store_ops->size >=
		             offsetof(regent_store_ops, deregister_instance) + sizeof(void *) &&
		     d->store_ops->register_instance && d->store_ops->deregister_instance;
		break;
	case REGENT_KIND_SINK:
		ok = d->sink_ops &&
		     d->sink_ops->size >= offsetof(regent_sink_ops, apply) + sizeof(void *) &&
		     d->sink_ops->apply;
		break;
	}
	if (!ok) {
		snprintf(err, errlen, "%s: missing or incomplete %s ops table", path,
		         regent_kind_name(d->kind));
		return -1;
	}
	return 0;
}

/* A copy of a plugin's key table in this core's layout: entries are
 * `stride` bytes apart in the plugin (its key_size), each copied up to the
 * fields both know (the rest zero).  NULL table: an empty one. */
static regent_config_key *copy_keys(const regent_config_key *table, size_t stride)
{
	const char *p = (const char *)table;
	size_t n = 0;
	while (table && ((const regent_config_key *)(p + n * stride))->name)
		n++;
	regent_config_key *out = regent_xcalloc(n + 1, sizeof(*out));
	size_t len = stride < sizeof(*out) ? stride : sizeof(*out);
	for (size_t i = 0; i < n; i++)
		memcpy(&out[i], p + i * stride, len);
	return out;
}

regent_loaded_plugin *regent_plugin_load_path(const char *path, const char *expect_name,
                                              int expected_kind, char *err, size_t errlen)
{
	for (regent_loaded_plugin *lp = loaded; lp; lp = lp->next) {
		if (strcmp(lp->path, path) == 0) {
			if (check_desc(path, lp->desc, expect_name, expected_kind, err, errlen) != 0)
				return NULL;
			lp->refs++;
			return lp;
		}
	}
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: cannot load plugin: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: cannot load plugin: not a regular file", path);
		return NULL;
	}
	dlerror();
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s: cannot load plugin: %s", path, e ? e : "dlopen failed");
		return NULL;
	}
	const regent_plugin *d = dlsym(dl, REGENT_PLUGIN_SYMBOL);
	if (!d) {
		snprintf(err, errlen, "%s: not a regent plugin (no exported symbol \"%s\")", path,
		         REGENT_PLUGIN_SYMBOL);
		dlclose(dl);
		return NULL;
	}
	if (check_desc(path, d, expect_name, expected_kind, err, errlen) != 0) {
		dlclose(dl);
		return NULL;
	}
	regent_loaded_plugin *lp = regent_xcalloc(1, sizeof(*lp));
	lp->path = regent_xstrdup(path);
	lp->dl = dl;
	lp->desc = d;
	lp->header_minor = DESC_HAS(d, header_minor) ? d->header_minor : d->abi_minor;
	lp->config_keys = copy_keys(d->config_keys, key_stride(d));
	lp->service_keys = copy_keys(d->service_keys, key_stride(d));
	lp->refs = 1;
	lp->next = loaded;
	loaded = lp;
	return lp;
}

regent_loaded_plugin *regent_plugin_load(const char *dir, const char *name, int expected_kind,
                                         char *err, size_t errlen)
{
	char *path = regent_xasprintf("%s/%s.so", dir, name);
	regent_loaded_plugin *lp = regent_plugin_load_path(path, name, expected_kind, err, errlen);
	free(path);
	return lp;
}

void regent_plugin_unref(regent_loaded_plugin *lp)
{
	if (lp && lp->refs > 0)
		lp->refs--;
}

void regent_plugins_unload_unused(void)
{
	regent_loaded_plugin **pp = &loaded;
	while (*pp) {
		regent_loaded_plugin *lp = *pp;
		if (lp->refs == 0) {
			*pp = lp->next;
			/* Under ASan keep the code mapped so leak reports can still
			 * symbolise frames from the plugin. */
			if (!getenv("REGENT_NO_DLCLOSE"))
				dlclose(lp->dl);
			free(lp->config_keys);
			free(lp->service_keys);
			free(lp->path);
			free(lp);
		} else {
			pp = &lp->next;
		}
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int regent_list_plugins(const char *dir, FILE *out)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "regent: cannot list plugins in %s: %s\n", dir, strerror(errno));
		return 1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l > 3 && strcmp(de->d_name + l - 3, ".so") == 0) {
			names = regent_xrealloc(names, sizeof(*names) * (n + 1));
			names[n++] = regent_xstrdup(de->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	int rc = 0;
	fprintf(out, "%-12s %-7s %-10s %s\n", "NAME", "KIND", "VERSION", "PATH");
	for (size_t i = 0; i < n; i++) {
		char *path = regent_xasprintf("%s/%s", dir, names[i]);
		names[i][strlen(names[i]) - 3] = '\0';
		char err[1024];
		regent_loaded_plugin *lp = regent_plugin_load_path(path, names[i], 0, err, sizeof(err));
		if (lp) {
			fprintf(out, "%-12s %-7s %-10s %s\n", lp->desc->name,
			        regent_kind_name(lp->desc->kind),
			        lp->desc->version ? lp->desc->version : "-", path);
			regent_plugin_unref(lp);
		} else {
			fprintf(stderr, "regent: %s\n", err);
			rc = 1;
		}
		free(path);
		free(names[i]);
	}
	free(names);
	if (n == 0)
		fprintf(stderr, "regent: no plugins (*.so) in %s\n", dir);
	regent_plugins_unload_unused();
	return rc;
}
