// omni's CPU kernels for int4 weights (x86-64 with AVX-512 BW, VNNI and BF16), built on first use by native.py.
//
// Weights are the checkpoint's bytes: row n of an (N, K) weight is K/2 bytes, byte j holding column 2j in its low
// nibble and column 2j+1 in its high one, each as s = q + 8 (compressed-tensors pack-quantized, offset binary).
// Scales (N, C) in bf16, fp16 or fp32, one per group of G = K/C columns; zero points (N, C) int8 or none:
//     w[n, k] = (s - 8 - zp[n, g]) * scale[n, g]                      g = k / G
//
// Two modes, both reading each packed byte once per call and never writing a float copy of the weight:
//   a8     dynamic int8 activations (what llama.cpp's Q4_0 x Q8_0 path does): each row of x is quantized per group,
//          x8 = round(x * 127 / amax), and a group's dot product is one exact integer sum (vpdpbusd: 64 products of
//          unsigned nibble x signed byte per instruction):
//              y[m, n] = sum_g scale[n, g] * sx[m, g] * (dot(s, x8) - (8 + zp[n, g]) * sum(x8))
//   bf16   exact products: nibbles become bf16 through a 16-entry table (vpermw) and vdpbf16ps sums x * (s - 8) in
//          fp32; the result equals dequantize-then-matmul in fp32 up to the order of the sums.
// Both need K to be a multiple of 128 (one 64-byte load holds 128 columns); G is 32, 64 or a multiple of 128 (G = K
// for channel-wise scales). Groups under 128 columns share a load, and each lane of a dot product then takes its own
// group's scale (tile_small).
//
// x is reordered once per call so that a 64-byte load of weights meets its columns in register order: per 128
// columns, the 64 even ones then the 64 odd ones (the low nibbles, then the high ones).

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

inline float bf16_to_float(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
inline uint16_t float_to_bf16(float f) {  // round to nearest even, as torch rounds
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

enum ScaleType { BF16 = 0, F16 = 1, F32 = 2 };
template <int S> inline float scale_at(const void *p, int64_t i);
template <> inline float scale_at<BF16>(const void *p, int64_t i) { return bf16_to_float(((const uint16_t *)p)[i]); }
template <> inline float scale_at<F16>(const void *p, int64_t i) { return _cvtsh_ss(((const uint16_t *)p)[i]); }
template <> inline float scale_at<F32>(const void *p, int64_t i) { return ((const float *)p)[i]; }

// The activations of one call, prepared for a mode: codes (int8 for a8, bf16 for bf16) in the reordered layout,
// and per row and group the sum of the codes (what the zero points multiply) and, for a8, their scale.
struct Acts {
    void *codes;
    float *scale;
    float *sum;
    int64_t K, C;
    Acts row(int64_t r) const {  // row r alone
        return {(char *)codes + r * K * (scale ? 1 : 2), scale ? scale + r * C : nullptr, sum + r * C, K, C};
    }
};

// 32 bf16 columns loaded as 16 dwords: the even column is each dword's low half, the odd one its high half.
inline __m512 even_cols(__m512i d) { return _mm512_castsi512_ps(_mm512_slli_epi32(d, 16)); }
inline __m512 odd_cols(__m512i d) { return _mm512_castsi512_ps(_mm512_and_si512(d, _mm512_set1_epi32(-65536))); }
// where 32 columns starting at k (k % 32 == 0) go in the reordered layout: their 16 even ones, then 64 later the odd
inline int64_t even_at(int64_t k) { return (k & ~int64_t(127)) + ((k & 127) >> 1); }

void prepare(const uint16_t *x, int64_t M, int64_t K, int64_t C, bool a8, Acts *out) {
    const int64_t G = K / C;
    out->K = K; out->C = C;
    out->codes = aligned_alloc(64, ((M * K * (a8 ? 1 : 2)) + 63) / 64 * 64);
    out->scale = a8 ? (float *)malloc(M * C * sizeof(float)) : nullptr;
    out->sum = (float *)malloc(M * C * sizeof(float));
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *xr = x + m * K;
        for (int64_t g = 0; g < C; g++) {
            const int64_t k0 = g * G, k1 = k0 + G;
            if (!a8) {  // the bf16 values reordered, and their sum
                uint16_t *o = (uint16_t *)out->codes + m * K;
                __m512 sum = _mm512_setzero_ps();
                for (int64_t k = k0; k < k1; k += 32) {
                    const __m512i d = _mm512_loadu_si512(xr + k);
                    uint16_t *e = o + even_at(k);
                    _mm256_storeu_si256((__m256i *)e, _mm512_cvtepi32_epi16(d));
                    _mm256_storeu_si256((__m256i *)(e + 64), _mm512_cvtepi32_epi16(_mm512_srli_epi32(d, 16)));
                    sum = _mm512_add_ps(sum, _mm512_add_ps(even_cols(d), odd_cols(d)));
                }
                out->sum[m * C + g] = _mm512_reduce_add_ps(sum);
                continue;
            }
            // a8: the group's scale from its largest magnitude, then the rounded codes (vcvtps2dq rounds to nearest
            // even, as nearbyintf does) and their sum
            __m512 amax = _mm512_setzero_ps();
            for (int64_t k = k0; k < k1; k += 32) {
                const __m512i d = _mm512_loadu_si512(xr + k);
                amax = _mm512_max_ps(amax, _mm512_max_ps(_mm512_abs_ps(even_cols(d)), _mm512_abs_ps(odd_cols(d))));
            }
            const float a = _mm512_reduce_max_ps(amax);
            const __m512 inv = _mm512_set1_ps(a > 0.f ? 127.f / a : 0.f);
            int8_t *o = (int8_t *)out->codes + m * K;
            __m512i sum = _mm512_setzero_si512();
            for (int64_t k = k0; k < k1; k += 32) {
                const __m512i d = _mm512_loadu_si512(xr + k);
                const __m512i e = _mm512_cvtps_epi32(_mm512_mul_ps(even_cols(d), inv));
                const __m512i f = _mm512_cvtps_epi32(_mm512_mul_ps(odd_cols(d), inv));
                _mm_storeu_si128((__m128i *)(o + even_at(k)), _mm512_cvtepi32_epi8(e));
                _mm_storeu_si128((__m128i *)(o + even_at(k) + 64), _mm512_cvtepi32_epi8(f));
                sum = _mm512_add_epi32(sum, _mm512_add_epi32(e, f));
            }
            out->scale[m * C + g] = a / 127.f;
            out->sum[m * C + g] = (float)_mm512_reduce_add_epi32(sum);
        }
    }
}

void release(Acts *a) { free(a->codes); free(a->scale); free(a->sum); }

// 64 weight bytes (128 columns of one row) as a8 multiplies them: the low nibbles (even columns), the high ones.
inline void nibbles_u8(const uint8_t *p, __m512i &lo, __m512i &hi) {
    const __m512i b = _mm512_loadu_si512(p), low4 = _mm512_set1_epi8(15);
    lo = _mm512_and_si512(b, low4);
    hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);
}

// 32 weight bytes (64 columns) as the bf16 values s - 8, through a 16-entry table: even columns, odd ones.
inline void nibbles_bf16(const uint8_t *p, __m512bh &lo, __m512bh &hi) {
    const __m512i table = _mm512_set_epi16(  // bf16 of s - 8 for s = 0..15 (the upper half unused)
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x40e0, 0x40c0, 0x40a0, 0x4080, 0x4040, 0x4000, 0x3f80, 0x0000,
        (short)0xbf80, (short)0xc000, (short)0xc040, (short)0xc080, (short)0xc0a0, (short)0xc0c0, (short)0xc0e0,
        (short)0xc100);
    const __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
    lo = (__m512bh)_mm512_permutexvar_epi16(_mm512_and_si512(b, _mm512_set1_epi16(15)), table);
    hi = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(b, 4), table);
}

// The products of NB weight rows (at wk, ws bytes apart) and MB prepared rows of x (m0 ..) over 128 columns at k,
// added into dot[i][j] as int32 lanes (a8). Also fetches the next tile's bytes ahead.
template <int NB, int MB>
inline __attribute__((always_inline)) void products_a8(const Acts &x, int64_t m0, const uint8_t *wk, int64_t ws,
                                                       int64_t k, __m512i (&dot)[NB][MB]) {
    __m512i lo[NB], hi[NB];
    for (int i = 0; i < NB; i++) {
        nibbles_u8(wk + i * ws, lo[i], hi[i]);
        _mm_prefetch((const char *)(wk + (i + NB) * ws), _MM_HINT_T0);
    }
    for (int j = 0; j < MB; j++) {
        const int8_t *xk = (const int8_t *)x.codes + (m0 + j) * x.K + k;
        const __m512i even = _mm512_loadu_si512(xk), odd = _mm512_loadu_si512(xk + 64);
        for (int i = 0; i < NB; i++)
            dot[i][j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dot[i][j], lo[i], even), hi[i], odd);
    }
}

// The same in bf16 over the 64 columns of one half (0 or 1) of the 128 at k, added into dot[i][j] as fp32 lanes.
template <int NB, int MB>
inline __attribute__((always_inline)) void products_bf16(const Acts &x, int64_t m0, const uint8_t *wk, int64_t ws,
                                                         int64_t k, int half, __m512 (&dot)[NB][MB]) {
    __m512bh lo[NB], hi[NB];
    for (int i = 0; i < NB; i++) {
        nibbles_bf16(wk + i * ws + 32 * half, lo[i], hi[i]);
        _mm_prefetch((const char *)(wk + (i + NB) * ws + 32 * half), _MM_HINT_T0);
    }
    for (int j = 0; j < MB; j++) {
        const uint16_t *xk = (const uint16_t *)x.codes + (m0 + j) * x.K + k + 32 * half;
        const __m512bh even = (__m512bh)_mm512_loadu_si512(xk), odd = (__m512bh)_mm512_loadu_si512(xk + 64);
        for (int i = 0; i < NB; i++)
            dot[i][j] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(dot[i][j], lo[i], even), hi[i], odd);
    }
}

// What group g's sum of weight row n with x row m is multiplied by (scale, times x's scale for a8), and what comes
// off afterwards, added to corr: the a8 codes hold s = q + 8 (the bf16 table already subtracts the 8), and the zero
// point comes off the same way, both times the group's sum of x.
template <int S, bool A8>
inline float group_factor(const Acts &x, const void *scale, const int8_t *zp, int64_t n, int64_t m, int64_t g,
                          float &corr) {
    float s = scale_at<S>(scale, n * x.C + g);
    if (A8) s *= x.scale[m * x.C + g];
    const float off = (A8 ? 8.f : 0.f) + (zp ? (float)zp[n * x.C + g] : 0.f);
    corr += s * off * x.sum[m * x.C + g];
    return s;
}

// NB weight rows (n0 ..) against MB rows of x (m0 ..): y[m, n] for the NB x MB pairs, written as fp32 with stride ys.
// Independent accumulators per pair keep the multiply units busy (one chain would wait on each result).
template <int NB, int MB, int S, bool A8>
inline __attribute__((always_inline)) void tile(const Acts &x, int64_t m0, const uint8_t *w, const void *scale,
                                                const int8_t *zp, int64_t n0, float *y, int64_t ys) {
    const int64_t K = x.K, C = x.C, G = K / C, ws = K / 2;
    __m512 acc[NB][MB];
    float corr[NB][MB];
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < MB; j++) { acc[i][j] = _mm512_setzero_ps(); corr[i][j] = 0.f; }
    for (int64_t g = 0; g < C; g++) {
        __m512i dot[NB][MB];  // a8: int32 sums of this group
        __m512 fdot[NB][MB];  // bf16: fp32 sums of this group
        for (int i = 0; i < NB; i++)
            for (int j = 0; j < MB; j++) dot[i][j] = _mm512_setzero_si512(), fdot[i][j] = _mm512_setzero_ps();
        for (int64_t k = g * G; k < (g + 1) * G; k += 128) {
            const uint8_t *wk = w + n0 * ws + k / 2;
            if constexpr (A8) products_a8<NB, MB>(x, m0, wk, ws, k, dot);
            else for (int half = 0; half < 2; half++) products_bf16<NB, MB>(x, m0, wk, ws, k, half, fdot);
        }
        for (int i = 0; i < NB; i++)
            for (int j = 0; j < MB; j++) {
                const float s = group_factor<S, A8>(x, scale, zp, n0 + i, m0 + j, g, corr[i][j]);
                __m512 d = fdot[i][j];
                if constexpr (A8) d = _mm512_cvtepi32_ps(dot[i][j]);
                acc[i][j] = _mm512_fmadd_ps(d, _mm512_set1_ps(s), acc[i][j]);
            }
    }
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < MB; j++) y[j * ys + i] = _mm512_reduce_add_ps(acc[i][j]) - corr[i][j];
}

// tile for groups of 32 or 64 columns. A dot-product vector spans `span` columns (a8: the 128 of one load, lane l
// summing columns 8l..8l+7; bf16: each 64-column half, lane l summing columns 4l..4l+3), which hold `per` groups:
// each lane is scaled by its own group's factor before it joins the accumulator.
template <int NB, int MB, int S, bool A8>
inline __attribute__((always_inline)) void tile_small(const Acts &x, int64_t m0, const uint8_t *w, const void *scale,
                                                      const int8_t *zp, int64_t n0, float *y, int64_t ys) {
    const int64_t K = x.K, G = K / x.C, ws = K / 2;
    const int span = A8 ? 128 : 64, per = span / (int)G;
    alignas(64) int32_t lane_group[16];
    for (int l = 0; l < 16; l++) lane_group[l] = l * (span / 16) / (int)G;
    const __m512i lanes = _mm512_load_si512(lane_group);
    __m512 acc[NB][MB];
    float corr[NB][MB];
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < MB; j++) { acc[i][j] = _mm512_setzero_ps(); corr[i][j] = 0.f; }
    // the vectors d[i][j], spanning groups g0 .. g0 + per - 1, scaled lane by lane into acc
    auto add = [&](auto &d, int64_t g0) {
        for (int i = 0; i < NB; i++)
            for (int j = 0; j < MB; j++) {
                alignas(16) float f[4] = {0.f, 0.f, 0.f, 0.f};
                for (int q = 0; q < per; q++)
                    f[q] = group_factor<S, A8>(x, scale, zp, n0 + i, m0 + j, g0 + q, corr[i][j]);
                const __m512 sv = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(_mm_load_ps(f)));
                __m512 v;
                if constexpr (A8) v = _mm512_cvtepi32_ps(d[i][j]); else v = d[i][j];
                acc[i][j] = _mm512_fmadd_ps(v, sv, acc[i][j]);
            }
    };
    for (int64_t k = 0; k < K; k += 128) {
        const uint8_t *wk = w + n0 * ws + k / 2;
        if constexpr (A8) {
            __m512i dot[NB][MB];
            for (int i = 0; i < NB; i++)
                for (int j = 0; j < MB; j++) dot[i][j] = _mm512_setzero_si512();
            products_a8<NB, MB>(x, m0, wk, ws, k, dot);
            add(dot, k / G);
        } else {
            for (int half = 0; half < 2; half++) {
                __m512 dot[NB][MB];
                for (int i = 0; i < NB; i++)
                    for (int j = 0; j < MB; j++) dot[i][j] = _mm512_setzero_ps();
                products_bf16<NB, MB>(x, m0, wk, ws, k, half, dot);
                add(dot, (k + 64 * half) / G);
            }
        }
    }
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < MB; j++) y[j * ys + i] = _mm512_reduce_add_ps(acc[i][j]) - corr[i][j];
}

template <int NB, int MB, int S, bool A8, bool SMALL>
inline __attribute__((always_inline)) void any_tile(const Acts &x, int64_t m0, const uint8_t *w, const void *scale,
                                                    const int8_t *zp, int64_t n0, float *y, int64_t ys) {
    if constexpr (SMALL) tile_small<NB, MB, S, A8>(x, m0, w, scale, zp, n0, y, ys);
    else tile<NB, MB, S, A8>(x, m0, w, scale, zp, n0, y, ys);
}

// One weight (or one expert of a stack) against M prepared rows: y (M, N) fp32. Row blocks run in parallel.
template <int S, bool A8, bool SMALL>
void rows_fixed(const Acts &x, int64_t M, const uint8_t *w, const void *scale, const int8_t *zp, int64_t n0,
                int64_t n1, float *y, int64_t ys) {
    int64_t n = n0;
    if (M == 1)
        for (; n + 4 <= n1; n += 4) any_tile<4, 1, S, A8, SMALL>(x, 0, w, scale, zp, n, y + n, ys);
    for (; n < n1; n += (M > 1 && n + 2 <= n1) ? 2 : 1) {
        const bool two = M > 1 && n + 2 <= n1;
        for (int64_t m = 0; m < M; m += 4) {
            const int64_t mb = M - m < 4 ? M - m : 4;
            float *o = y + m * ys + n;
#define ROWS(NB) switch (mb) { \
                case 1: any_tile<NB, 1, S, A8, SMALL>(x, m, w, scale, zp, n, o, ys); break; \
                case 2: any_tile<NB, 2, S, A8, SMALL>(x, m, w, scale, zp, n, o, ys); break; \
                case 3: any_tile<NB, 3, S, A8, SMALL>(x, m, w, scale, zp, n, o, ys); break; \
                default: any_tile<NB, 4, S, A8, SMALL>(x, m, w, scale, zp, n, o, ys); }
            if (two) { ROWS(2) } else { ROWS(1) }
#undef ROWS
        }
    }
}

using rows_fn = void (*)(const Acts &, int64_t, const uint8_t *, const void *, const int8_t *, int64_t, int64_t,
                         float *, int64_t);

rows_fn pick(int scale_type, int a8, int64_t group) {
    static const rows_fn fns[3][2][2] = {
        {{rows_fixed<BF16, false, false>, rows_fixed<BF16, false, true>},
         {rows_fixed<BF16, true, false>, rows_fixed<BF16, true, true>}},
        {{rows_fixed<F16, false, false>, rows_fixed<F16, false, true>},
         {rows_fixed<F16, true, false>, rows_fixed<F16, true, true>}},
        {{rows_fixed<F32, false, false>, rows_fixed<F32, false, true>},
         {rows_fixed<F32, true, false>, rows_fixed<F32, true, true>}},
    };
    return fns[scale_type][a8 ? 1 : 0][group < 128 ? 1 : 0];
}

constexpr int64_t CHUNK = 32;  // rows per parallel work item: a multiple of 4 (the 1-row tile's 4 weight rows)
inline float silu(float v) { return v / (1.f + expf(-v)); }

}  // namespace

extern "C" {

// 1 when this CPU runs the library (built with -march=native: this guards a cache moved between machines)
int omni_cpu_ok(void) {
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bf16");
}

// y (M, N) bf16 = x (M, K) bf16 @ w.T, w as described at the top.
void omni_int4_linear(const uint16_t *x, int64_t M, int64_t K, const uint8_t *w, int64_t N, const void *scale,
                      int scale_type, int64_t C, const int8_t *zp, int a8, int threads, uint16_t *y) {
    Acts acts;
    prepare(x, M, K, C, a8, &acts);
    float *out = (float *)malloc(M * N * sizeof(float));
    const rows_fn fn = pick(scale_type, a8, K / C);
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t n0 = c * CHUNK, n1 = n0 + CHUNK < N ? n0 + CHUNK : N;
        fn(acts, M, w, scale, zp, n0, n1, out, N);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = n0; n < n1; n++) y[m * N + n] = float_to_bf16(out[m * N + n]);
    }
    free(out);
    release(&acts);
}

// The routed experts of one MoE layer for T tokens, each sent to A experts: y (T, D) bf16 =
//     sum_a weight[t, a] * down_e(silu(gate_e(x_t)) * up_e(x_t))          e = experts[t, a]
// over stacks gate, up (E, F, D/2 bytes) and down (E, D, F/2 bytes), scales (E, F, Cd) and (E, D, Cf), zero points
// alike or null. Only the chosen experts' bytes are read. The expert outputs are rounded to bf16 where the plain
// path rounds them (the gate and up products, silu(gate) * up), and summed over experts in fp32.
void omni_int4_moe(const uint16_t *x, int64_t T, int64_t D, int64_t F, int64_t A, const int64_t *experts,
                   const float *weights, const uint8_t *gate, const uint8_t *up, const uint8_t *down,
                   const void *gate_scale, const void *up_scale, const void *down_scale, int scale_type,
                   const int8_t *gate_zp, const int8_t *up_zp, const int8_t *down_zp, int64_t Cd, int64_t Cf,
                   int a8, int threads, uint16_t *y) {
    const int64_t R = T * A, sbytes = scale_type == F32 ? 4 : 2;
    const rows_fn up_fn = pick(scale_type, a8, D / Cd), down_fn = pick(scale_type, a8, F / Cf);
    // rows n0..n1 of expert e of a stack of (N, K) weights with C scale columns, against one prepared row
    auto expert = [&](rows_fn fn, const Acts &row, const uint8_t *w, const void *scale, const int8_t *zp, int64_t e,
                      int64_t N, int64_t K, int64_t C, int64_t n0, int64_t n1, float *out) {
        const int64_t so = e * N * C;
        fn(row, 1, w + e * N * (K / 2), (const char *)scale + so * sbytes, zp ? zp + so : nullptr, n0, n1, out, N);
    };
    Acts xa, ha;
    prepare(x, T, D, Cd, a8, &xa);
    float *g = (float *)malloc(R * F * sizeof(float)), *u = (float *)malloc(R * F * sizeof(float));
    uint16_t *h = (uint16_t *)malloc(R * F * sizeof(uint16_t));
    float *yd = (float *)malloc(R * D * sizeof(float));
    const int64_t fchunks = (F + CHUNK - 1) / CHUNK, dchunks = (D + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < R * fchunks; i++) {  // gate and up of every (token, expert) pair, row chunk by chunk
        const int64_t r = i / fchunks, n0 = (i % fchunks) * CHUNK, n1 = n0 + CHUNK < F ? n0 + CHUNK : F;
        const Acts row = xa.row(r / A);
        expert(up_fn, row, gate, gate_scale, gate_zp, experts[r], F, D, Cd, n0, n1, g + r * F);
        expert(up_fn, row, up, up_scale, up_zp, experts[r], F, D, Cd, n0, n1, u + r * F);
        for (int64_t n = r * F + n0; n < r * F + n1; n++) {
            const float gv = bf16_to_float(float_to_bf16(g[n])), uv = bf16_to_float(float_to_bf16(u[n]));
            h[n] = float_to_bf16(bf16_to_float(float_to_bf16(silu(gv))) * uv);
        }
    }
    prepare(h, R, F, Cf, a8, &ha);
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R * dchunks; i++) {  // down, then the weighted sum over each token's experts
            const int64_t r = i / dchunks, n0 = (i % dchunks) * CHUNK, n1 = n0 + CHUNK < D ? n0 + CHUNK : D;
            expert(down_fn, ha.row(r), down, down_scale, down_zp, experts[r], D, F, Cf, n0, n1, yd + r * D);
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) {
                float s = 0.f;
                for (int64_t a = 0; a < A; a++)
                    s += weights[t * A + a] * bf16_to_float(float_to_bf16(yd[(t * A + a) * D + d]));
                y[t * D + d] = float_to_bf16(s);
            }
    }
    free(g); free(u); free(h); free(yd);
    release(&xa); release(&ha);
}

}  // extern "C"
