/*
 * allocator: the malloc this process runs (allocator.h).
 *
 * dladdr() on the address of malloc names the shared object that defines the
 * malloc this code (and, through the same symbol lookup, every library) calls;
 * the version comes from that object's own interface, looked up with dlsym so
 * that no build depends on an allocator's headers: glibc's
 * gnu_get_libc_version, mimalloc's mi_version (2.0.9 is 209), jemalloc's
 * mallctl("version") and gperftools' tc_version.
 */
#include "control/allocator.h"

#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char allocator_name[96];
static pthread_once_t allocator_once = PTHREAD_ONCE_INIT;

/* The object's file name without its folder: "libmimalloc.so.2". */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static void name_mimalloc(void)
{
    int (*version)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "mi_version");
    int v = version != NULL ? version() : 0;
    snprintf(allocator_name, sizeof(allocator_name), "mimalloc %d.%d.%d", v / 100, v / 10 % 10,
             v % 10);
}

static void name_jemalloc(void)
{
    int (*control)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
    const char *version = "unknown";
    size_t length = sizeof(version);
    if (control == NULL || control("version", &version, &length, NULL, 0) != 0)
        version = "unknown";
    /* "5.3.0-0-g54eaed1d...": the release, without the commit it was built from. */
    snprintf(allocator_name, sizeof(allocator_name), "jemalloc %.*s", (int)strcspn(version, "-"),
             version);
}

static void name_tcmalloc(void)
{
    const char *(*version)(int *, int *, const char **) =
        (const char *(*)(int *, int *, const char **))dlsym(RTLD_DEFAULT, "tc_version");
    int major = 0, minor = 0;
    const char *patch = "";
    if (version != NULL)
        version(&major, &minor, &patch);
    snprintf(allocator_name, sizeof(allocator_name), "tcmalloc %d.%d%s", major, minor,
             patch != NULL ? patch : "");
}

static void allocator_resolve(void)
{
    /* AddressSanitizer's runtime intercepts malloc, linked shared (gcc) or into the program
     * (clang). */
    if (dlsym(RTLD_DEFAULT, "__asan_init") != NULL) {
        snprintf(allocator_name, sizeof(allocator_name), "AddressSanitizer");
        return;
    }
    Dl_info info;
    void *(*allocate)(size_t) = malloc;
    if (dladdr((void *)allocate, &info) == 0 || info.dli_fname == NULL) {
        snprintf(allocator_name, sizeof(allocator_name), "unknown");
        return;
    }
    const char *file = base_name(info.dli_fname);
    if (strncmp(file, "libc.so", 7) == 0)
        snprintf(allocator_name, sizeof(allocator_name), "glibc %s", gnu_get_libc_version());
    else if (strncmp(file, "libmimalloc", 11) == 0)
        name_mimalloc();
    else if (strncmp(file, "libjemalloc", 11) == 0)
        name_jemalloc();
    else if (strncmp(file, "libtcmalloc", 11) == 0)
        name_tcmalloc();
    else
        snprintf(allocator_name, sizeof(allocator_name), "%s", file);
}

const char *allocator_running(void)
{
    pthread_once(&allocator_once, allocator_resolve);
    return allocator_name;
}
