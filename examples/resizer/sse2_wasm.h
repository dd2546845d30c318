/*
 * The SSE2 intrinsics stb_image's JPEG decoder uses (IDCT, YCbCr to RGB,
 * chroma upsampling), written with Wasm SIMD128 (<wasm_simd128.h>), so the
 * Wasm build runs the same hand-vectorised paths as a native x86 build
 * instead of their scalar fallbacks. The technique is Emscripten's
 * (its emmintrin.h); only the 30 intrinsics stb_image.h calls are here.
 *
 * Include before stb_image.h. It defines clang's <emmintrin.h> include guard,
 * so stb's own `#include <emmintrin.h>` is a no-op, and STBI__X64_TARGET, so
 * stb takes its SSE2 branch (with GCC-style `stbi__sse2_available() == 1`).
 */
#ifndef RESIZER_SSE2_WASM_H
#define RESIZER_SSE2_WASM_H

#if !defined(__wasm_simd128__)
#error "sse2_wasm.h needs -msimd128"
#endif

#include <wasm_simd128.h>

#define __EMMINTRIN_H
#define STBI__X64_TARGET

typedef v128_t __m128i;

#define SSE2_INLINE static inline __attribute__((always_inline))

SSE2_INLINE __m128i _mm_setzero_si128(void) { return wasm_i64x2_const(0, 0); }
SSE2_INLINE __m128i _mm_set1_epi8(char v) { return wasm_i8x16_splat(v); }
SSE2_INLINE __m128i _mm_set1_epi16(short v) { return wasm_i16x8_splat(v); }
SSE2_INLINE __m128i _mm_set1_epi32(int v) { return wasm_i32x4_splat(v); }
SSE2_INLINE __m128i _mm_setr_epi16(short a, short b, short c, short d, short e, short f, short g, short h) {
    return wasm_i16x8_make(a, b, c, d, e, f, g, h);
}

SSE2_INLINE __m128i _mm_load_si128(const __m128i *p) { return wasm_v128_load(p); }
SSE2_INLINE __m128i _mm_loadl_epi64(const __m128i *p) { return wasm_v128_load64_zero(p); }
SSE2_INLINE void _mm_storeu_si128(__m128i *p, __m128i a) { wasm_v128_store(p, a); }
SSE2_INLINE void _mm_storel_epi64(__m128i *p, __m128i a) { wasm_v128_store64_lane(p, a, 0); }

SSE2_INLINE __m128i _mm_add_epi16(__m128i a, __m128i b) { return wasm_i16x8_add(a, b); }
SSE2_INLINE __m128i _mm_add_epi32(__m128i a, __m128i b) { return wasm_i32x4_add(a, b); }
SSE2_INLINE __m128i _mm_sub_epi16(__m128i a, __m128i b) { return wasm_i16x8_sub(a, b); }
SSE2_INLINE __m128i _mm_sub_epi32(__m128i a, __m128i b) { return wasm_i32x4_sub(a, b); }
SSE2_INLINE __m128i _mm_xor_si128(__m128i a, __m128i b) { return wasm_v128_xor(a, b); }
/* pmaddwd: pairwise i16 products summed to i32, exactly i32x4.dot_i16x8_s. */
SSE2_INLINE __m128i _mm_madd_epi16(__m128i a, __m128i b) { return wasm_i32x4_dot_i16x8(a, b); }
/* pmulhw: the high 16 bits of each signed 16x16 product. */
SSE2_INLINE __m128i _mm_mulhi_epi16(__m128i a, __m128i b) {
    v128_t lo = wasm_i32x4_extmul_low_i16x8(a, b), hi = wasm_i32x4_extmul_high_i16x8(a, b);
    return wasm_i16x8_shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
}

/* Shift counts: SSE2 gives 0 (logical) or the sign (arithmetic) past the lane width;
 * stb only shifts by constants within it, where Wasm's modulo counts agree. */
SSE2_INLINE __m128i _mm_slli_epi16(__m128i a, int n) { return wasm_i16x8_shl(a, n); }
SSE2_INLINE __m128i _mm_srli_epi16(__m128i a, int n) { return wasm_u16x8_shr(a, n); }
SSE2_INLINE __m128i _mm_srai_epi16(__m128i a, int n) { return wasm_i16x8_shr(a, n); }
SSE2_INLINE __m128i _mm_srai_epi32(__m128i a, int n) { return wasm_i32x4_shr(a, n); }

SSE2_INLINE __m128i _mm_packs_epi32(__m128i a, __m128i b) { return wasm_i16x8_narrow_i32x4(a, b); }
SSE2_INLINE __m128i _mm_packus_epi16(__m128i a, __m128i b) { return wasm_u8x16_narrow_i16x8(a, b); }

SSE2_INLINE __m128i _mm_unpacklo_epi8(__m128i a, __m128i b) {
    return wasm_i8x16_shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
SSE2_INLINE __m128i _mm_unpackhi_epi8(__m128i a, __m128i b) {
    return wasm_i8x16_shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}
SSE2_INLINE __m128i _mm_unpacklo_epi16(__m128i a, __m128i b) {
    return wasm_i16x8_shuffle(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
}
SSE2_INLINE __m128i _mm_unpackhi_epi16(__m128i a, __m128i b) {
    return wasm_i16x8_shuffle(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* The immediate forms are macros: Wasm shuffles and lane indices must be constants. */
#define _mm_insert_epi16(a, v, i) wasm_i16x8_replace_lane((a), (i), (short)(v))
#define _mm_shuffle_epi32(a, imm) \
    wasm_i32x4_shuffle((a), (a), (imm) & 3, ((imm) >> 2) & 3, ((imm) >> 4) & 3, ((imm) >> 6) & 3)
/* Byte shifts of the whole register, zeros shifted in (lane i of `a` moves to i + n, or i - n). */
#define SSE2_BYTE_LEFT(i, n) ((i) < (n) ? 0 : 16 + (i) - (n))
#define _mm_slli_si128(a, n)                                                                                  \
    wasm_i8x16_shuffle(wasm_i64x2_const(0, 0), (a), SSE2_BYTE_LEFT(0, n), SSE2_BYTE_LEFT(1, n),               \
                       SSE2_BYTE_LEFT(2, n), SSE2_BYTE_LEFT(3, n), SSE2_BYTE_LEFT(4, n), SSE2_BYTE_LEFT(5, n), \
                       SSE2_BYTE_LEFT(6, n), SSE2_BYTE_LEFT(7, n), SSE2_BYTE_LEFT(8, n), SSE2_BYTE_LEFT(9, n), \
                       SSE2_BYTE_LEFT(10, n), SSE2_BYTE_LEFT(11, n), SSE2_BYTE_LEFT(12, n),                    \
                       SSE2_BYTE_LEFT(13, n), SSE2_BYTE_LEFT(14, n), SSE2_BYTE_LEFT(15, n))
#define _mm_srli_si128(a, n)                                                                                    \
    wasm_i8x16_shuffle((a), wasm_i64x2_const(0, 0), 0 + (n), 1 + (n), 2 + (n), 3 + (n), 4 + (n), 5 + (n),      \
                       6 + (n), 7 + (n), 8 + (n), 9 + (n), 10 + (n), 11 + (n), 12 + (n), 13 + (n), 14 + (n), \
                       15 + (n))

#endif
