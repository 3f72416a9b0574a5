// glibc's malloc tuning (mallopt), which Swift's Glibc module does not export.
#pragma once
#if defined(__linux__)
#include <malloc.h>

/// Caps the number of malloc arenas (M_ARENA_MAX); returns 1 on success.
static inline int rapport_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
#else
static inline int rapport_malloc_arena_max(int arenas) { (void)arenas; return 0; }
#endif
