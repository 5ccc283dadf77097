/*
 * allocator: which malloc this process runs, for dpsd --version, the status
 * document, /metrics and the ready log line (beside the OpenSSL they name).
 *
 * The build links one (meson -Dallocator, README "Allocator"), but the
 * dynamic linker decides at start which object's malloc every library calls
 * (an LD_PRELOAD, or a sanitizer's runtime, comes first), so the name is read
 * from the running process, never from the build's configuration.
 */
#ifndef DPS_ALLOCATOR_H
#define DPS_ALLOCATOR_H

/* "glibc 2.36", "mimalloc 2.0.9", "jemalloc 5.3.0", "tcmalloc 2.10" or
 * "AddressSanitizer"; for any other object that defines malloc, its file name.
 * Static storage, worked out once; any thread may call it. */
const char *allocator_running(void);

#endif
