#ifndef CORTEX_ED25519_H
#define CORTEX_ED25519_H

// Ed25519 signing (RFC 8032) for the journal's signatures (docs/decisions/044-signed-journal.md).
// OpenSSL 3's EVP interface costs about 1 ms of provider set-up in every process that signs, a
// third of a tool's call; this is the same algorithm on the curve's arithmetic alone (radix 2^51
// field elements, extended coordinates), with OpenSSL's low-level SHA-512, so a tool pays only
// the signature (~0.1 ms). Signatures are deterministic: the tests check that they are byte for
// byte OpenSSL's. Verification (cortex verify --audit) stays with OpenSSL's EVP interface.
// Scalars are reduced modulo the group order by Barrett's method on 64-bit limbs.

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

typedef uint64_t cortex_fe[5];
typedef unsigned __int128 cortex_u128;

static const uint64_t cortex_fe_mask = (((uint64_t)1) << 51) - 1;

static inline uint64_t cortex_load64(const uint8_t *s) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | s[i];
    return v;
}

static inline void cortex_store64(uint8_t *s, uint64_t v) {
    for (int i = 0; i < 8; i++) { s[i] = (uint8_t)v; v >>= 8; }
}

static inline void cortex_fe_frombytes(cortex_fe h, const uint8_t s[32]) {
    h[0] = cortex_load64(s) & cortex_fe_mask;
    h[1] = (cortex_load64(s + 6) >> 3) & cortex_fe_mask;
    h[2] = (cortex_load64(s + 12) >> 6) & cortex_fe_mask;
    h[3] = (cortex_load64(s + 19) >> 1) & cortex_fe_mask;
    h[4] = (cortex_load64(s + 24) >> 12) & cortex_fe_mask;
}

static inline void cortex_fe_carry(uint64_t t[5]) {
    t[1] += t[0] >> 51; t[0] &= cortex_fe_mask;
    t[2] += t[1] >> 51; t[1] &= cortex_fe_mask;
    t[3] += t[2] >> 51; t[2] &= cortex_fe_mask;
    t[4] += t[3] >> 51; t[3] &= cortex_fe_mask;
    t[0] += 19 * (t[4] >> 51); t[4] &= cortex_fe_mask;
}

static inline void cortex_fe_tobytes(uint8_t s[32], const cortex_fe h) {
    uint64_t t[5] = {h[0], h[1], h[2], h[3], h[4]};
    cortex_fe_carry(t);
    cortex_fe_carry(t);
    // Now below 2^255; add 19 and 2^255 - 19 - 2^255 ... (donna's contraction): the result mod p.
    t[0] += 19;
    cortex_fe_carry(t);
    t[0] += (((uint64_t)1) << 51) - 19;
    t[1] += (((uint64_t)1) << 51) - 1;
    t[2] += (((uint64_t)1) << 51) - 1;
    t[3] += (((uint64_t)1) << 51) - 1;
    t[4] += (((uint64_t)1) << 51) - 1;
    t[1] += t[0] >> 51; t[0] &= cortex_fe_mask;
    t[2] += t[1] >> 51; t[1] &= cortex_fe_mask;
    t[3] += t[2] >> 51; t[2] &= cortex_fe_mask;
    t[4] += t[3] >> 51; t[3] &= cortex_fe_mask;
    t[4] &= cortex_fe_mask;
    cortex_store64(s, t[0] | (t[1] << 51));
    cortex_store64(s + 8, (t[1] >> 13) | (t[2] << 38));
    cortex_store64(s + 16, (t[2] >> 26) | (t[3] << 25));
    cortex_store64(s + 24, (t[3] >> 39) | (t[4] << 12));
}

static inline void cortex_fe_add(cortex_fe h, const cortex_fe f, const cortex_fe g) {
    for (int i = 0; i < 5; i++) h[i] = f[i] + g[i];
}

// f - g + 4p: inputs below 2^54.
static inline void cortex_fe_sub(cortex_fe h, const cortex_fe f, const cortex_fe g) {
    h[0] = f[0] + 0x1FFFFFFFFFFFB4ULL - g[0];
    for (int i = 1; i < 5; i++) h[i] = f[i] + 0x1FFFFFFFFFFFFCULL - g[i];
    cortex_fe_carry(h);
}

static inline void cortex_fe_mul(cortex_fe h, const cortex_fe f, const cortex_fe g) {
    uint64_t g1 = g[1] * 19, g2 = g[2] * 19, g3 = g[3] * 19, g4 = g[4] * 19;
    cortex_u128 r0 = (cortex_u128)f[0] * g[0] + (cortex_u128)f[1] * g4 + (cortex_u128)f[2] * g3 + (cortex_u128)f[3] * g2 + (cortex_u128)f[4] * g1;
    cortex_u128 r1 = (cortex_u128)f[0] * g[1] + (cortex_u128)f[1] * g[0] + (cortex_u128)f[2] * g4 + (cortex_u128)f[3] * g3 + (cortex_u128)f[4] * g2;
    cortex_u128 r2 = (cortex_u128)f[0] * g[2] + (cortex_u128)f[1] * g[1] + (cortex_u128)f[2] * g[0] + (cortex_u128)f[3] * g4 + (cortex_u128)f[4] * g3;
    cortex_u128 r3 = (cortex_u128)f[0] * g[3] + (cortex_u128)f[1] * g[2] + (cortex_u128)f[2] * g[1] + (cortex_u128)f[3] * g[0] + (cortex_u128)f[4] * g4;
    cortex_u128 r4 = (cortex_u128)f[0] * g[4] + (cortex_u128)f[1] * g[3] + (cortex_u128)f[2] * g[2] + (cortex_u128)f[3] * g[1] + (cortex_u128)f[4] * g[0];
    r1 += r0 >> 51; r0 &= cortex_fe_mask;
    r2 += r1 >> 51; r1 &= cortex_fe_mask;
    r3 += r2 >> 51; r2 &= cortex_fe_mask;
    r4 += r3 >> 51; r3 &= cortex_fe_mask;
    r0 += (r4 >> 51) * 19; r4 &= cortex_fe_mask;
    r1 += r0 >> 51; r0 &= cortex_fe_mask;
    h[0] = (uint64_t)r0; h[1] = (uint64_t)r1; h[2] = (uint64_t)r2; h[3] = (uint64_t)r3; h[4] = (uint64_t)r4;
}

static inline void cortex_fe_sq(cortex_fe h, const cortex_fe f) {
    uint64_t f0_2 = f[0] * 2, f1_2 = f[1] * 2, f1_38 = f[1] * 38, f2_38 = f[2] * 38, f3_38 = f[3] * 38, f3_19 = f[3] * 19, f4_19 = f[4] * 19;
    cortex_u128 r0 = (cortex_u128)f[0] * f[0] + (cortex_u128)f1_38 * f[4] + (cortex_u128)f2_38 * f[3];
    cortex_u128 r1 = (cortex_u128)f0_2 * f[1] + (cortex_u128)f2_38 * f[4] + (cortex_u128)f3_19 * f[3];
    cortex_u128 r2 = (cortex_u128)f0_2 * f[2] + (cortex_u128)f[1] * f[1] + (cortex_u128)f3_38 * f[4];
    cortex_u128 r3 = (cortex_u128)f0_2 * f[3] + (cortex_u128)f1_2 * f[2] + (cortex_u128)f4_19 * f[4];
    cortex_u128 r4 = (cortex_u128)f0_2 * f[4] + (cortex_u128)f1_2 * f[3] + (cortex_u128)f[2] * f[2];
    r1 += r0 >> 51; r0 &= cortex_fe_mask;
    r2 += r1 >> 51; r1 &= cortex_fe_mask;
    r3 += r2 >> 51; r2 &= cortex_fe_mask;
    r4 += r3 >> 51; r3 &= cortex_fe_mask;
    r0 += (r4 >> 51) * 19; r4 &= cortex_fe_mask;
    r1 += r0 >> 51; r0 &= cortex_fe_mask;
    h[0] = (uint64_t)r0; h[1] = (uint64_t)r1; h[2] = (uint64_t)r2; h[3] = (uint64_t)r3; h[4] = (uint64_t)r4;
}

static inline void cortex_fe_sqn(cortex_fe h, const cortex_fe f, int n) {
    cortex_fe_sq(h, f);
    for (int i = 1; i < n; i++) cortex_fe_sq(h, h);
}

// z^(p-2) = 1/z, p - 2 = 2^255 - 21, by the usual chain (254 squarings, 11 multiplications).
static inline void cortex_fe_invert(cortex_fe out, const cortex_fe z) {
    cortex_fe t0, t1, t2, t3;
    cortex_fe_sq(t0, z);            // z^2
    cortex_fe_sqn(t1, t0, 2);       // z^8
    cortex_fe_mul(t1, z, t1);       // z^9
    cortex_fe_mul(t0, t0, t1);      // z^11
    cortex_fe_sq(t2, t0);           // z^22
    cortex_fe_mul(t1, t1, t2);      // z^(2^5 - 1)
    cortex_fe_sqn(t2, t1, 5);
    cortex_fe_mul(t1, t2, t1);      // z^(2^10 - 1)
    cortex_fe_sqn(t2, t1, 10);
    cortex_fe_mul(t2, t2, t1);      // z^(2^20 - 1)
    cortex_fe_sqn(t3, t2, 20);
    cortex_fe_mul(t2, t3, t2);      // z^(2^40 - 1)
    cortex_fe_sqn(t2, t2, 10);
    cortex_fe_mul(t1, t2, t1);      // z^(2^50 - 1)
    cortex_fe_sqn(t2, t1, 50);
    cortex_fe_mul(t2, t2, t1);      // z^(2^100 - 1)
    cortex_fe_sqn(t3, t2, 100);
    cortex_fe_mul(t2, t3, t2);      // z^(2^200 - 1)
    cortex_fe_sqn(t2, t2, 50);
    cortex_fe_mul(t1, t2, t1);      // z^(2^250 - 1)
    cortex_fe_sqn(t1, t1, 5);       // z^(2^255 - 2^5)
    cortex_fe_mul(out, t1, t0);     // z^(2^255 - 21)
}

typedef struct { cortex_fe X, Y, Z, T; } cortex_ge;

// 2P (dbl-2008-hwcd, a = -1). P's T is not read; `with_t` 0 leaves 2P's T stale (for a point
// that is only doubled again).
static inline void cortex_ge_double(cortex_ge *r, const cortex_ge *p, int with_t) {
    cortex_fe a, b, c, e, g, f, h, t, zero = {0, 0, 0, 0, 0};
    cortex_fe_sq(a, p->X);
    cortex_fe_sq(b, p->Y);
    cortex_fe_sq(c, p->Z);
    cortex_fe_add(c, c, c);
    cortex_fe_add(t, p->X, p->Y);
    cortex_fe_sq(t, t);
    cortex_fe_sub(e, t, a);
    cortex_fe_sub(e, e, b);
    cortex_fe_sub(g, b, a);
    cortex_fe_sub(f, g, c);
    cortex_fe_add(t, a, b);
    cortex_fe_sub(h, zero, t);
    cortex_fe_mul(r->X, e, f);
    cortex_fe_mul(r->Y, g, h);
    if (with_t) cortex_fe_mul(r->T, e, h);
    cortex_fe_mul(r->Z, f, g);
}

static inline void cortex_fe_cmov(cortex_fe f, const cortex_fe g, uint64_t bit) {
    uint64_t mask = (uint64_t)0 - bit;
    for (int i = 0; i < 5; i++) f[i] ^= mask & (f[i] ^ g[i]);
}

// A multiple of B with Z = 1, kept as (y + x, y - x, 2 d x y): what an addition to it needs.
typedef struct { cortex_fe yplusx, yminusx, xy2d; } cortex_ge_precomputed;

#include "CortexEd25519Table.h"

// P + Q for Q with Z = 1 (add-2008-hwcd-3, a = -1, complete on this curve; with Z2 = 1 and Q's
// products taken from the table).
static inline void cortex_ge_add_precomputed(cortex_ge *r, const cortex_ge *p, const cortex_ge_precomputed *q) {
    cortex_fe a, b, c, d, e, f, g, h;
    cortex_fe_sub(a, p->Y, p->X);
    cortex_fe_mul(a, a, q->yminusx);
    cortex_fe_add(b, p->Y, p->X);
    cortex_fe_mul(b, b, q->yplusx);
    cortex_fe_mul(c, p->T, q->xy2d);
    cortex_fe_add(d, p->Z, p->Z);
    cortex_fe_sub(e, b, a);
    cortex_fe_sub(f, d, c);
    cortex_fe_add(g, d, c);
    cortex_fe_add(h, b, a);
    cortex_fe_mul(r->X, e, f);
    cortex_fe_mul(r->Y, g, h);
    cortex_fe_mul(r->T, e, h);
    cortex_fe_mul(r->Z, f, g);
}

// digit * 256^row * B for a digit in -8...8, picked by masks from the row's 8 entries (every
// entry is read whatever the digit), then negated by mask: -(x, y) is (-x, y).
static inline void cortex_ge_pick(cortex_ge_precomputed *out, int row, int8_t digit) {
    uint8_t negative = (uint8_t)digit >> 7;
    uint8_t magnitude = (uint8_t)(digit - (int8_t)((0 - negative) & (uint8_t)(2 * digit)));
    cortex_fe zero = {0, 0, 0, 0, 0}, negated;
    memset(out, 0, sizeof(*out));
    out->yplusx[0] = 1;
    out->yminusx[0] = 1;
    for (uint64_t j = 1; j <= 8; j++) {
        uint64_t equal = (((uint64_t)(j ^ magnitude)) - 1) >> 63;  // 1 when j == magnitude
        const cortex_ge_precomputed *entry = &cortex_ed_base_table[row][j - 1];
        cortex_fe_cmov(out->yplusx, entry->yplusx, equal);
        cortex_fe_cmov(out->yminusx, entry->yminusx, equal);
        cortex_fe_cmov(out->xy2d, entry->xy2d, equal);
    }
    cortex_fe swapped;
    memcpy(swapped, out->yplusx, sizeof(cortex_fe));
    cortex_fe_cmov(out->yplusx, out->yminusx, negative);
    cortex_fe_cmov(out->yminusx, swapped, negative);
    cortex_fe_sub(negated, zero, out->xy2d);
    cortex_fe_cmov(out->xy2d, negated, negative);
}

// [s]B for a 32-byte little-endian scalar below 2^255, in constant time. s is written in 64
// signed base-16 digits e[i] in -8...8, so [s]B = sum e[i] 16^i B: the odd digits' multiples of
// 256^k B (k = i / 2) from the table, that sum times 16 (four doublings), then the even digits'.
static inline void cortex_ge_scalarmult_base(cortex_ge *r, const uint8_t s[32]) {
    int8_t e[64];
    for (int i = 0; i < 32; i++) {
        e[2 * i] = (int8_t)(s[i] & 15);
        e[2 * i + 1] = (int8_t)(s[i] >> 4);
    }
    int8_t carry = 0;
    for (int i = 0; i < 63; i++) {
        e[i] = (int8_t)(e[i] + carry);
        carry = (int8_t)((e[i] + 8) >> 4);
        e[i] = (int8_t)(e[i] - carry * 16);
    }
    e[63] = (int8_t)(e[63] + carry);
    cortex_ge q;
    cortex_ge_precomputed pick;
    memset(&q, 0, sizeof(q));
    q.Y[0] = 1;
    q.Z[0] = 1;
    for (int i = 1; i < 64; i += 2) {
        cortex_ge_pick(&pick, i / 2, e[i]);
        cortex_ge_add_precomputed(&q, &q, &pick);
    }
    for (int k = 0; k < 4; k++) cortex_ge_double(&q, &q, k == 3);
    for (int i = 0; i < 64; i += 2) {
        cortex_ge_pick(&pick, i / 2, e[i]);
        cortex_ge_add_precomputed(&q, &q, &pick);
    }
    *r = q;
}

static inline void cortex_ge_pack(uint8_t out[32], const cortex_ge *p) {
    cortex_fe zi, x, y;
    uint8_t xb[32];
    cortex_fe_invert(zi, p->Z);
    cortex_fe_mul(x, p->X, zi);
    cortex_fe_mul(y, p->Y, zi);
    cortex_fe_tobytes(out, y);
    cortex_fe_tobytes(xb, x);
    out[31] ^= (uint8_t)((xb[0] & 1) << 7);
}

// The group order L = 2^252 + 27742317777372353535851937790883648493, and Barrett's constant
// floor(2^512 / L), both as little-endian 64-bit limbs.
static const uint64_t cortex_ed_order[4] = {0x5812631a5cf5d3edULL, 0x14def9dea2f79cd6ULL, 0, 0x1000000000000000ULL};
static const uint64_t cortex_ed_barrett[5] = {0xed9ce5a30a2c131bULL, 0x2106215d086329a7ULL, 0xffffffffffffffebULL,
                                              0xffffffffffffffffULL, 0x000000000000000fULL};

// out (count_a + count_b limbs) = a × b, schoolbook on 64-bit limbs.
static inline void cortex_limbs_multiply(uint64_t *out, const uint64_t *a, int count_a, const uint64_t *b, int count_b) {
    for (int i = 0; i < count_a + count_b; i++) out[i] = 0;
    for (int i = 0; i < count_a; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < count_b; j++) {
            cortex_u128 t = (cortex_u128)a[i] * b[j] + out[i + j] + carry;
            out[i + j] = (uint64_t)t;
            carry = (uint64_t)(t >> 64);
        }
        out[i + count_b] = carry;
    }
}

// out (32 bytes, little-endian) = x mod L for x below 2^512 (8 limbs): Barrett's reduction with
// base 2^64 and k = 4 (q = ((x >> 192) * floor(2^512 / L)) >> 320 is at most 2 below x / L, so
// x - q L < 3 L), then two subtractions of L kept by mask: the same instructions whatever x is.
static inline void cortex_ed_mod_order(uint8_t out[32], const uint64_t x[8]) {
    uint64_t product[10], multiple[9], rest[5], less[5];
    cortex_limbs_multiply(product, x + 3, 5, cortex_ed_barrett, 5);
    cortex_limbs_multiply(multiple, product + 5, 5, cortex_ed_order, 4);
    uint64_t borrow = 0;
    for (int i = 0; i < 5; i++) {  // modulo 2^320, where x - q L is exact
        cortex_u128 t = (cortex_u128)x[i] - multiple[i] - borrow;
        rest[i] = (uint64_t)t;
        borrow = (uint64_t)(t >> 64) & 1;
    }
    for (int pass = 0; pass < 2; pass++) {
        borrow = 0;
        for (int i = 0; i < 5; i++) {
            cortex_u128 t = (cortex_u128)rest[i] - (i < 4 ? cortex_ed_order[i] : 0) - borrow;
            less[i] = (uint64_t)t;
            borrow = (uint64_t)(t >> 64) & 1;
        }
        uint64_t keep = 0 - borrow;  // all ones when rest < L
        for (int i = 0; i < 5; i++) rest[i] = (rest[i] & keep) | (less[i] & ~keep);
    }
    for (int i = 0; i < 4; i++) cortex_store64(out + 8 * i, rest[i]);
}

// out = a 64-byte little-endian number (a SHA-512 digest) mod L.
static inline void cortex_ed_reduce(uint8_t out[32], const uint8_t h[64]) {
    uint64_t x[8];
    for (int i = 0; i < 8; i++) x[i] = cortex_load64(h + 8 * i);
    cortex_ed_mod_order(out, x);
}

// out = (r + h d) mod L, for 32-byte little-endian r, h and d: the signature's S.
static inline void cortex_ed_multiply_add(uint8_t out[32], const uint8_t r[32], const uint8_t h[32], const uint8_t d[32]) {
    uint64_t a[4], b[4], x[8];
    for (int i = 0; i < 4; i++) {
        a[i] = cortex_load64(h + 8 * i);
        b[i] = cortex_load64(d + 8 * i);
    }
    cortex_limbs_multiply(x, a, 4, b, 4);  // below 2^253 * 2^255
    uint64_t carry = 0;
    for (int i = 0; i < 8; i++) {
        cortex_u128 t = (cortex_u128)x[i] + (i < 4 ? cortex_load64(r + 8 * i) : 0) + carry;
        x[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    cortex_ed_mod_order(out, x);
}

/// The public key of the 32-byte private `seed`.
static inline void cortex_ed25519_public_key(uint8_t public_key[32], const uint8_t seed[32]) {
    uint8_t d[64];
    SHA512_CTX context;
    SHA512_Init(&context);
    SHA512_Update(&context, seed, 32);
    SHA512_Final(d, &context);
    d[0] &= 248; d[31] &= 127; d[31] |= 64;
    cortex_ge a;
    cortex_ge_scalarmult_base(&a, d);
    cortex_ge_pack(public_key, &a);
}

/// The Ed25519 signature of `message` by the key with private `seed` and `public_key`.
static inline void cortex_ed25519_sign(uint8_t signature[64], const uint8_t *message, size_t length, const uint8_t seed[32],
                                       const uint8_t public_key[32]) {
    uint8_t d[64], r64[64], r[32], h64[64], h[32];
    SHA512_CTX context;
    SHA512_Init(&context);
    SHA512_Update(&context, seed, 32);
    SHA512_Final(d, &context);
    d[0] &= 248; d[31] &= 127; d[31] |= 64;
    SHA512_Init(&context);
    SHA512_Update(&context, d + 32, 32);
    SHA512_Update(&context, message, length);
    SHA512_Final(r64, &context);
    cortex_ed_reduce(r, r64);
    cortex_ge R;
    cortex_ge_scalarmult_base(&R, r);
    cortex_ge_pack(signature, &R);
    SHA512_Init(&context);
    SHA512_Update(&context, signature, 32);
    SHA512_Update(&context, public_key, 32);
    SHA512_Update(&context, message, length);
    SHA512_Final(h64, &context);
    cortex_ed_reduce(h, h64);
    cortex_ed_multiply_add(signature + 32, r, h, d);
}

/// SHA-256 through OpenSSL's low-level interface (no provider set-up): key fingerprints and the
/// seal chain.
static inline void cortex_sha256_init(SHA256_CTX *context) { SHA256_Init(context); }
static inline void cortex_sha256_update(SHA256_CTX *context, const void *bytes, size_t count) { SHA256_Update(context, bytes, count); }
static inline void cortex_sha256_final(uint8_t digest[32], SHA256_CTX *context) { SHA256_Final(digest, context); }

#endif
