#define _GNU_SOURCE
#include "CCortexBytes.h"
#include <string.h>

const void *cortex_memchr(const void *bytes, int byte, size_t count) { return memchr(bytes, byte, count); }
const void *cortex_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length) {
    return memmem(haystack, haystack_length, needle, needle_length);
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t cortex_crc32c_sse42(uint32_t crc, const unsigned char *bytes, size_t count) {
    uint64_t wide = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        wide = _mm_crc32_u64(wide, word);
        bytes += 8;
        count -= 8;
    }
    crc = (uint32_t)wide;
    while (count > 0) {
        crc = _mm_crc32_u8(crc, *bytes++);
        count--;
    }
    return crc;
}
#endif
int cortex_crc32c_hardware(uint32_t *state, const void *bytes, size_t count) {
#if defined(__x86_64__)
    static int supported = -1;  // -1 unknown, 0 no, 1 yes: every thread computes the same value
    int known = __atomic_load_n(&supported, __ATOMIC_RELAXED);
    if (known < 0) {
        unsigned a, b, c, d;
        known = (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) ? 1 : 0;
        __atomic_store_n(&supported, known, __ATOMIC_RELAXED);
    }
    if (known) {
        *state = cortex_crc32c_sse42(*state, (const unsigned char *)bytes, count);
        return 1;
    }
#endif
    (void)state;
    (void)bytes;
    (void)count;
    return 0;
}
