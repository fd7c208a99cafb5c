#ifndef CCORTEX_BYTES_H
#define CCORTEX_BYTES_H

#include <stddef.h>
#include <stdint.h>

/// Pure byte computations for the domain module (no system call): the CPU's CRC-32C
/// instruction, and the C library's memchr/memmem, which Swift's standard library lacks.

/// CRC-32C of `count` bytes with the SSE4.2 `crc32` instruction, continuing from the raw
/// (inverted) state in *state. Returns 1, or 0 without touching *state when the CPU has no
/// SSE4.2 (the caller then uses its tables; both give the same checksum).
int cortex_crc32c_hardware(uint32_t *state, const void *bytes, size_t count);

/// memchr(3): the first byte equal to `byte` in the `count` bytes at `bytes`, or NULL.
const void *cortex_memchr(const void *bytes, int byte, size_t count);

/// memmem(3): the first occurrence of needle in haystack, or NULL.
const void *cortex_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length);

#endif
