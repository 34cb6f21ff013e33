// Fused CPU kernel for the reverse-SDE analysis of the ensemble score filter (EnSF) with a
// per-member prior score and component-wise arctan observations with diagonal noise.
//
// One call integrates, for every element e of the flattened (N, d) ensemble, the K steps
//
//     x <- cx[k] * x + ce[k] * xf[e] + cl[k] * prec[i] * (y[i] - atan(x)) / (1 + x^2) + s[k] * z[k, e],
//
// (i = e mod d), which is Euler--Maruyama on the reverse SDE with the score
// (alpha_t xf - x) / sigma_t^2 + h(t) grad log N(y; atan(x), R); the per-step coefficients are
// computed by the caller (assimilax/_native/__init__.py). An element stays in registers for all
// K steps. The increments z are those of assimilax.diffusion.noise "gaussian_ars": block b
// (steps 4b .. 4b+3) draws ARS-4x32-7 (Salmon et al. 2011) of the counter (e, 0, 0, 0) under the
// block's 128-bit key, and two Box--Muller pairs of its four words. The pure-JAX implementation
// in assimilax.diffusion.noise computes the same words bit for bit; the tests compare both.
//
// Written for x86-64 with AES-NI (VAES when available) and AVX2; compiled on first use with
// -march=native. Without them the build fails and the caller uses the XLA path.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

#if !defined(__AES__) || !defined(__AVX2__)
#error "assimilax native EnSF kernel needs AES-NI and AVX2"
#endif

namespace ffi = xla::ffi;

namespace {

typedef float vf __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(32)));
typedef int32_t vi __attribute__((vector_size(32)));

constexpr int kLanes = 8;
constexpr int kVec = 4;                     // vectors per tile (instruction-level parallelism)
constexpr int kTile = kLanes * kVec;        // elements per tile
constexpr int kRounds = 7;                  // ARS rounds
constexpr int kStepsPerBlock = 4;           // one ARS block (4 words) = 2 Box--Muller pairs = 4 steps
constexpr uint64_t kWeylLo = 0x9E3779B97F4A7C15ULL, kWeylHi = 0xBB67AE8584CAA73BULL;

inline vf splat(float a) { return (vf){a, a, a, a, a, a, a, a}; }

// One Euler--Maruyama step x <- cx x + ce xf + cl prec (y - atan x) / (1 + x^2) + s z, with the
// Cephes atanf range reduction and polynomial (as assimilax._fastmath.arctan). The arithmetic is
// arranged for a short dependency chain through x, which bounds the speed of this loop more than
// the instruction count: the terms without atan ("rest"), 1 / (1 + x^2) and the sign of x are
// computed off the chain, the two quotients are independent divisions, and the last operation is
// one fused multiply-add with atan|x|: x' = (w y + rest) - (sign(x) w) atan|x|, w = cl prec / (1 + x^2).
template <bool kUniformPrec>
inline vf em_step(vf x, vf f, vf y, vf prec, float cx, float ce, float cl, float s, vf zz) {
  const vf one = splat(1.0f);
  vf rest = cx * x + ce * f + s * zz;
  vf a = (vf)((vu)x & 0x7fffffffu);
  vi big = a > 2.414213562373095f;
  vi mid = a > 0.4142135623730950f;  // overridden where big
  vf num = big ? splat(-1.0f) : (mid ? a - 1.0f : a);
  vf den = big ? a : (mid ? a + 1.0f : one);
  vf y0 = big ? splat(1.5707963267948966f) : (mid ? splat(0.7853981633974483f) : splat(0.0f));
  vf q = x * x + one;
  vf u = num / den;
  vf w = one / q;  // 1 / (1 + x^2)
  vf z = u * u;
  vf uz = u * z;
  vf p = ((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z - 3.33329491539e-1f;
  vf r = p * uz + (y0 + u);  // atan|x|
  vf cw = kUniformPrec ? cl * w : cl * prec * w;  // with a uniform precision, cl already has it
  vf cws = (vf)((vu)cw ^ ((vu)x & 0x80000000u));
  return (cw * y + rest) - cws * r;
}

// Cephes logf for x in (0, 1].
inline vf log_v(vf x) {
  vi i = (vi)x;
  vi e = ((i >> 23) & 0xff) - 126;
  vf m = (vf)((i & 0x807fffff) | 0x3f000000);  // mantissa in [0.5, 1)
  vi small = m < 0.70710678118654752440f;       // -1 where true
  e += small;
  m = small ? m + m - 1.0f : m - 1.0f;
  vf z = m * m;
  vf y = ((((((((7.0376836292E-2f * m - 1.1514610310E-1f) * m + 1.1676998740E-1f) * m - 1.2420140846E-1f) * m +
              1.4249322787E-1f) * m - 1.6668057665E-1f) * m + 2.0000714765E-1f) * m - 2.4999993993E-1f) * m +
          3.3333331174E-1f) * m * z;
  vf fe = __builtin_convertvector(e, vf);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return m + y + 0.693359375f * fe;
}

// sin and cos of 2 pi u, u = k 2^-24 for a 24-bit integer k: exact quadrant reduction and the
// Cephes polynomials (as assimilax.diffusion.noise.sincos_2pi, which does the reduction in
// floating point; here it comes from the integer bits, with the same q and f up to a tie at
// 4u + 0.5 just below 4.5, where q = 3 replaces q = 4 for the same angle).
inline void sincos_2pi_bits(vu k, vf& sn, vf& cs) {
  // q = round(4u) = (k + 2^21) >> 22, f = (4u - q) pi / 2 from the low 22 bits (exact)
  vu t = k + (1u << 21);
  vi qi = (vi)(t >> 22);
  vf f = __builtin_convertvector((vi)(t & 0x3fffffu) - (1 << 21), vf) * (1.5707963267948966f / 4194304.0f);
  vf f2 = f * f;
  vf s = f + f * f2 * (-1.6666654611e-1f + f2 * (8.3321608736e-3f + f2 * -1.9515295891e-4f));
  vf c = 1.0f - 0.5f * f2 + f2 * f2 * (4.166664568298827e-2f + f2 * (-1.388731625493765e-3f + f2 * 2.443315711809948e-5f));
  // quadrant q: sin = (s, c, -s, -c)[q], cos = (c, -s, -c, s)[q]; blendv reads the mask's sign bit
  const __m256 odd = (__m256)(qi << 31);
  vf a = (vf)_mm256_blendv_ps((__m256)s, (__m256)c, odd), b = (vf)_mm256_blendv_ps((__m256)c, (__m256)s, odd);
  sn = (vf)((vu)a ^ ((vu)(qi & 2) << 30));
  cs = (vf)((vu)b ^ ((vu)((qi + 1) & 2) << 30));
}

// Two standard normals from two words (as assimilax.diffusion.noise.box_muller).
inline void box_muller(vu w0, vu w1, vf& z0, vf& z1) {
  vf u1 = (__builtin_convertvector((vi)(w0 >> 1), vf) + 0.5f) * 4.656612873077393e-10f;  // 2^-31
  vf r = __builtin_ia32_sqrtps256(-2.0f * log_v(u1));
  vf sn, cs;
  sincos_2pi_bits(w1 >> 8, sn, cs);
  z0 = r * cs;
  z1 = r * sn;
}

struct RoundKeys {
  __m256i k[kRounds + 1];  // each round key in both 128-bit lanes
};

inline RoundKeys round_keys(const uint32_t* kw) {
  RoundKeys rk;
  uint64_t lo = uint64_t(kw[0]) | (uint64_t(kw[1]) << 32), hi = uint64_t(kw[2]) | (uint64_t(kw[3]) << 32);
  for (int r = 0; r <= kRounds; ++r) {
    rk.k[r] = _mm256_set_epi64x((long long)hi, (long long)lo, (long long)hi, (long long)lo);
    lo += kWeylLo;
    hi += kWeylHi;
  }
  return rk;
}

// The counters (e0 + 2p, 0, 0, 0) | (e0 + 2p + 1, 0, 0, 0), p = 0..3, of one vector of 8 elements.
struct Counters {
  __m256i c[4];
};

inline Counters counters(uint32_t e0) {
  Counters ct;
  const __m256i first = _mm256_setr_epi32(int(e0), 0, 0, 0, int(e0 + 1), 0, 0, 0);
  const __m256i two = _mm256_setr_epi32(2, 0, 0, 0, 2, 0, 0, 0);
  ct.c[0] = first;
  for (int p = 1; p < 4; ++p) ct.c[p] = _mm256_add_epi32(ct.c[p - 1], two);
  return ct;
}

// ARS-4x32 of the 8 counters of `ct`: returns the words transposed, W[i] lane j = word i of element e0 + j.
inline void ars8(const Counters& ct, const RoundKeys& rk, vu W[4]) {
  __m256i blk[4];
#if defined(__VAES__)
  for (int p = 0; p < 4; ++p) {
    __m256i v = _mm256_xor_si256(ct.c[p], rk.k[0]);
    for (int r = 1; r < kRounds; ++r) v = _mm256_aesenc_epi128(v, rk.k[r]);
    blk[p] = _mm256_aesenclast_epi128(v, rk.k[kRounds]);
  }
#else
  for (int p = 0; p < 4; ++p) {
    __m128i v0 = _mm_xor_si128(_mm256_castsi256_si128(ct.c[p]), _mm256_castsi256_si128(rk.k[0]));
    __m128i v1 = _mm_xor_si128(_mm256_extracti128_si256(ct.c[p], 1), _mm256_castsi256_si128(rk.k[0]));
    for (int r = 1; r < kRounds; ++r) {
      v0 = _mm_aesenc_si128(v0, _mm256_castsi256_si128(rk.k[r]));
      v1 = _mm_aesenc_si128(v1, _mm256_castsi256_si128(rk.k[r]));
    }
    v0 = _mm_aesenclast_si128(v0, _mm256_castsi256_si128(rk.k[kRounds]));
    v1 = _mm_aesenclast_si128(v1, _mm256_castsi256_si128(rk.k[kRounds]));
    blk[p] = _mm256_set_m128i(v1, v0);
  }
#endif
  // blk[p] = [element 2p: w0 w1 w2 w3 | element 2p+1: w0 w1 w2 w3]
  __m256i t0 = _mm256_unpacklo_epi32(blk[0], blk[1]);  // e0w0 e2w0 e0w1 e2w1 | e1w0 e3w0 e1w1 e3w1
  __m256i t1 = _mm256_unpackhi_epi32(blk[0], blk[1]);  // e0w2 e2w2 e0w3 e2w3 | e1w2 e3w2 e1w3 e3w3
  __m256i t2 = _mm256_unpacklo_epi32(blk[2], blk[3]);
  __m256i t3 = _mm256_unpackhi_epi32(blk[2], blk[3]);
  // lanes after unpack_epi64: [e0 e2 e4 e6 | e1 e3 e5 e7]; permute to e0..e7
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  W[0] = (vu)_mm256_permutevar8x32_epi32(_mm256_unpacklo_epi64(t0, t2), perm);
  W[1] = (vu)_mm256_permutevar8x32_epi32(_mm256_unpackhi_epi64(t0, t2), perm);
  W[2] = (vu)_mm256_permutevar8x32_epi32(_mm256_unpacklo_epi64(t1, t3), perm);
  W[3] = (vu)_mm256_permutevar8x32_epi32(_mm256_unpackhi_epi64(t1, t3), perm);
}

struct Problem {
  int64_t n, d, K;
  const float *x, *xf, *y, *prec, *coef;  // coef (K, 4): cx, ce, cl, s
  const RoundKeys* round_keys;            // ceil(K / 4) blocks
  float* out;
};

template <bool kUniformPrec>
void run_tile(const Problem& P, int64_t base) {
  alignas(32) float xb[kTile], fb[kTile], yb[kTile], pb[kTile];
  for (int i = 0; i < kTile; ++i) {
    int64_t e = std::min(base + i, P.n - 1);  // the tail tile repeats the last element (discarded)
    int64_t c = e % P.d;
    xb[i] = P.x[e];
    fb[i] = P.xf[e];
    yb[i] = P.y[c];
    pb[i] = P.prec[c];
  }
  vf x[kVec], f[kVec], y[kVec], pr[kVec];
  Counters ctr[kVec];
  for (int v = 0; v < kVec; ++v) {
    ctr[v] = counters(uint32_t(base + v * kLanes));
    std::memcpy(&x[v], xb + v * kLanes, 32);
    std::memcpy(&f[v], fb + v * kLanes, 32);
    std::memcpy(&y[v], yb + v * kLanes, 32);
    std::memcpy(&pr[v], pb + v * kLanes, 32);
  }
  const int64_t n_blocks = (P.K + kStepsPerBlock - 1) / kStepsPerBlock;
  for (int64_t b = 0; b < n_blocks; ++b) {
    const RoundKeys& rk = P.round_keys[b];
    vf z[kStepsPerBlock][kVec];
    vu W[kVec][4];
    for (int v = 0; v < kVec; ++v) ars8(ctr[v], rk, W[v]);
    const float* c = P.coef + 4 * kStepsPerBlock * b;  // with a uniform precision, P.coef has cl * prec
    if ((b + 1) * kStepsPerBlock <= P.K) {  // a full block: constant trip count, z stays in registers
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {  // each Box--Muller pair just before its two steps: fewer live registers
        for (int v = 0; v < kVec; ++v) box_muller(W[v][2 * h], W[v][2 * h + 1], z[2 * h][v], z[2 * h + 1][v]);
#pragma GCC unroll 2
        for (int j = 2 * h; j < 2 * h + 2; ++j) {
          for (int v = 0; v < kVec; ++v)
            x[v] = em_step<kUniformPrec>(x[v], f[v], y[v], pr[v], c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3], z[j][v]);
        }
      }
    } else {
      for (int v = 0; v < kVec; ++v) {
        box_muller(W[v][0], W[v][1], z[0][v], z[1][v]);
        box_muller(W[v][2], W[v][3], z[2][v], z[3][v]);
      }
      for (int64_t j = 0; j < P.K - b * kStepsPerBlock; ++j) {
        for (int v = 0; v < kVec; ++v)
          x[v] = em_step<kUniformPrec>(x[v], f[v], y[v], pr[v], c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3], z[j][v]);
      }
    }
  }
  for (int v = 0; v < kVec; ++v) std::memcpy(xb + v * kLanes, &x[v], 32);
  const int64_t m = std::min<int64_t>(kTile, P.n - base);
  std::memcpy(P.out + base, xb, sizeof(float) * m);
}

// Tiles are handed out by an atomic counter; the calling thread works too, so the call finishes
// even when no pool thread is free.
struct Shared {
  Problem P;
  std::vector<RoundKeys> rk;
  std::vector<float> coef;  // cl scaled by the precision when it is the same for every component
  bool uniform_prec = false;
  int64_t n_chunks, tiles_per_chunk, n_tiles;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mu;
  std::condition_variable cv;
};

void work(Shared& S) {
  int64_t c;
  while ((c = S.next.fetch_add(1)) < S.n_chunks) {
    int64_t t0 = c * S.tiles_per_chunk, t1 = std::min(S.n_tiles, t0 + S.tiles_per_chunk);
    for (int64_t t = t0; t < t1; ++t) {
      if (S.uniform_prec) run_tile<true>(S.P, t * kTile);
      else run_tile<false>(S.P, t * kTile);
    }
    if (S.done.fetch_add(1) + 1 == S.n_chunks) {
      std::lock_guard<std::mutex> lock(S.mu);
      S.cv.notify_all();
    }
  }
}

ffi::Error EnsfEmArctanImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> xf,
                            ffi::Buffer<ffi::F32> y, ffi::Buffer<ffi::F32> prec, ffi::Buffer<ffi::F32> coef,
                            ffi::Buffer<ffi::U32> keys, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t n = x.element_count(), d = y.element_count();
  if (xf.element_count() != n || prec.element_count() != d || d == 0 || n % d != 0) {
    return ffi::Error::InvalidArgument("ensf kernel: inconsistent sizes");
  }
  if (coef.element_count() % 4 != 0) return ffi::Error::InvalidArgument("ensf kernel: coef must be (K, 4)");
  const int64_t K = coef.element_count() / 4;
  if (keys.element_count() != 4 * ((K + kStepsPerBlock - 1) / kStepsPerBlock)) {
    return ffi::Error::InvalidArgument("ensf kernel: keys must be (ceil(K / 4), 4)");
  }
  if (n >= (int64_t(1) << 32)) return ffi::Error::InvalidArgument("ensf kernel: more than 2^32 - 1 elements");
  auto S = std::make_shared<Shared>();
  const int64_t n_blocks = (K + kStepsPerBlock - 1) / kStepsPerBlock;
  S->rk.resize(n_blocks);
  for (int64_t b = 0; b < n_blocks; ++b) S->rk[b] = round_keys(keys.typed_data() + 4 * b);
  const float* p = prec.typed_data();
  S->uniform_prec = std::all_of(p, p + d, [&](float v) { return v == p[0]; });
  const float* c = coef.typed_data();
  if (S->uniform_prec) {
    S->coef.assign(c, c + 4 * K);
    for (int64_t k = 0; k < K; ++k) S->coef[4 * k + 2] *= p[0];
    c = S->coef.data();
  }
  S->P = Problem{n, d, K, x.typed_data(), xf.typed_data(), y.typed_data(), p, c, S->rk.data(), out->typed_data()};
  S->n_tiles = (n + kTile - 1) / kTile;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  S->tiles_per_chunk = std::max<int64_t>(1, std::min<int64_t>(64, S->n_tiles / (8 * threads)));
  S->n_chunks = (S->n_tiles + S->tiles_per_chunk - 1) / S->tiles_per_chunk;
  for (int64_t t = 1; t < std::min(threads, S->n_chunks); ++t) pool.Schedule([S]() { work(*S); });
  work(*S);
  std::unique_lock<std::mutex> lock(S->mu);
  S->cv.wait(lock, [&] { return S->done.load() == S->n_chunks; });
  return ffi::Error::Success();
}

// The raw ARS-4x32-7 words of counters (c, 0, 0, 0) for c = 0..n-1 under one key (for tests).
ffi::Error ArsWordsImpl(ffi::Buffer<ffi::U32> key, ffi::ResultBuffer<ffi::U32> out) {
  if (key.element_count() != 4 || out->element_count() % 32 != 0) {
    return ffi::Error::InvalidArgument("ars words: key must be (4,), output (n, 4) with n a multiple of 8");
  }
  RoundKeys rk = round_keys(key.typed_data());
  const int64_t n = out->element_count() / 4;
  uint32_t* o = out->typed_data();
  for (int64_t e0 = 0; e0 < n; e0 += kLanes) {
    vu W[4];
    ars8(counters(uint32_t(e0)), rk, W);
    for (int j = 0; j < kLanes; ++j)
      for (int i = 0; i < 4; ++i) o[4 * (e0 + j) + i] = W[i][j];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(AssimilaxEnsfEmArctan, EnsfEmArctanImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(AssimilaxArsWords, ArsWordsImpl,
                              ffi::Ffi::Bind().Arg<ffi::Buffer<ffi::U32>>().Ret<ffi::Buffer<ffi::U32>>());
