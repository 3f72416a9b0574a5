// glibc's malloc tuning (mallopt), which Swift's Glibc module does not export.
#pragma once
#if defined(__linux__)
#include <malloc.h>

/// Caps the number of malloc arenas (M_ARENA_MAX); returns 1 on success.
static inline int rapport_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
/// Returns the free pages of every arena to the system (malloc_trim(0)); returns 1 if any were.
static inline int rapport_malloc_trim(void) { return malloc_trim(0); }
#else
static inline int rapport_malloc_arena_max(int arenas) { (void)arenas; return 0; }
static inline int rapport_malloc_trim(void) { return 0; }
#endif
