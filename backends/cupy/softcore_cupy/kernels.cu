// softcore-cupy row kernels, compiled at run time by NVRTC (through CuPy's RawModule).
//
// Every kernel works on C-contiguous (rows, C) arrays of float or double and writes
// into preallocated outputs (see backends/README.md for the formulas). The source
// includes no header, so NVRTC needs nothing beyond its built-ins.
//
// Launch layouts (chosen on the Python side from C and the dtype alone):
//   group mode  blockDim = (T, R), T = 8, 16 or 32: T consecutive lanes of a warp per
//               row (32 / T rows per warp), R rows per block
//   block mode  blockDim = (T, 1), T a multiple of 32 up to 1024: one block per row
//   split mode  blockDim = (T, 1), CL blocks of a thread-block cluster per row (sm_90;
//               softmax, log_softmax, logsumexp, their backward passes, the CE
//               gradient; "Split rows", off as shipped)
// A thread handles the "slots" tid, tid + T, tid + 2T, ... of its row, a slot being
// VEC consecutive elements read or written with one vector access. The first CACHE
// slots of a thread are held in registers between the pass that reduces the row and
// the pass that writes it, so rows up to T * CACHE * VEC elements are read from
// memory exactly once; longer rows re-read the rest (mostly from L2). softmax and the
// unsmoothed cross-entropy gradient hold the slots' exps instead ("Kept exponentials").
//
// Determinism: a row's sums are formed in an order fixed by C alone (per-thread
// sequential sums, a shuffle butterfly over the row's lanes of a warp, then the warp
// partials added in index order by every thread; split rows then add the blocks'
// partials in rank order). There are no atomics.
//
// Accuracy: sums are accumulated in double for float inputs too; the row maximum is
// tracked exactly, and the row's log-sum-exp is formed in double (the log of the row's
// sum with the sum's rounding error where it matters: log_sum, near_one_err).
//
// Special values: a row containing NaN or +inf, or only -inf, has a NaN log-sum-exp,
// which propagates to every output of that row. NVRTC has no INFINITY macro, so the
// constants below are built from their bit patterns.

typedef long long i64;

#define SC_FULL_MASK 0xffffffffu

__device__ __forceinline__ double sc_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
__device__ __forceinline__ double sc_nan() { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ float sc_inff() { return __int_as_float(0x7f800000); }

// ---------------------------------------------------------------------------
// Vector slots

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
    T v[N];
};

// A: whether every row pointer is aligned to the pack size. The unaligned variant
// moves the same slots element by element, so both give bit-identical results.
template <typename T, int N, bool A>
struct SlotIO {
    static __device__ __forceinline__ Pack<T, N> ld(const T* row, i64 slot) {
        return reinterpret_cast<const Pack<T, N>*>(row)[slot];
    }
    static __device__ __forceinline__ void st(T* row, i64 slot, const Pack<T, N>& p) {
        reinterpret_cast<Pack<T, N>*>(row)[slot] = p;
    }
};

template <typename T, int N>
struct SlotIO<T, N, false> {
    static __device__ __forceinline__ Pack<T, N> ld(const T* row, i64 slot) {
        Pack<T, N> p;
#pragma unroll
        for (int e = 0; e < N; ++e) p.v[e] = row[slot * N + e];
        return p;
    }
    static __device__ __forceinline__ void st(T* row, i64 slot, const Pack<T, N>& p) {
#pragma unroll
        for (int e = 0; e < N; ++e) row[slot * N + e] = p.v[e];
    }
};

template <typename T, int N, bool A>
__device__ __forceinline__ Pack<T, N> ld(const T* row, i64 slot) {
    return SlotIO<T, N, A>::ld(row, slot);
}

template <typename T, int N, bool A>
__device__ __forceinline__ void st(T* row, i64 slot, const Pack<T, N>& p) {
    SlotIO<T, N, A>::st(row, slot, p);
}

// ---------------------------------------------------------------------------
// Conversions that keep subnormals
//
// CuPy compiles with -ftz=true (flush float subnormals to zero), which a later
// -ftz=false cannot undo. Float values therefore cross to and from double through
// these explicit PTX conversions, and float arithmetic is kept to places where a
// subnormal cannot change the result (see exp_term, exp_shift and exp_in).

__device__ __forceinline__ double to_d(float x) {
#ifdef __CUDA_ARCH__
    double r;
    asm("cvt.f64.f32 %0, %1;" : "=d"(r) : "f"(x));
    return r;
#else  // the tests' host emulation
    return (double)x;
#endif
}
__device__ __forceinline__ double to_d(double x) { return x; }

template <typename T>
__device__ __forceinline__ T from_d(double d);
template <>
__device__ __forceinline__ float from_d<float>(double d) {
#ifdef __CUDA_ARCH__
    float r;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(r) : "d"(d));
    return r;
#else
    return (float)d;
#endif
}
template <>
__device__ __forceinline__ double from_d<double>(double d) { return d; }

// ---------------------------------------------------------------------------
// Scalar helpers

// exp(x - m) as a double, computed in the input's precision (m is a value of the row,
// so (float)m is exact). A term flushed to zero here is below 2^-126 of the row's
// largest term, 1, so it cannot change the sum.
__device__ __forceinline__ double exp_term(float x, double m) { return to_d(expf(x - (float)m)); }
__device__ __forceinline__ double exp_term(double x, double m) { return exp(x - m); }

// A row's log-sum-exp kept as its two parts, lse = m + ls with m the row maximum and
// ls = log(sum(exp(x - m))). A row with NaN, +inf or only -inf has m = ls = NaN.
// For float rows the same numbers are also kept as floats, so that per element no
// value crosses to double and back (a conversion to or from double issues at a
// quarter of the rate of double arithmetic, and a few per element would cost more
// issue slots than the memory traffic leaves): mf = m exactly (m is a value of the
// row), and ls = lh + ll with lh = ls rounded to float and ll the rest, rounded.
struct Shift {
    double m, ls;
    float mf, lh, ll;
};

__device__ __forceinline__ Shift shift_of(double m, double ls) {
    Shift h;
    h.m = m;
    h.ls = ls;
    h.mf = from_d<float>(m);
    h.lh = from_d<float>(ls);
    h.ll = from_d<float>(ls - to_d(h.lh));  // NaN for a NaN row, as every part is
    return h;
}

// a + b = s + e exactly (Knuth's TwoSum; no branch, any order of magnitudes).
template <typename T>
__device__ __forceinline__ T two_sum(T a, T b, T& e) {
    const T s = a + b;
    const T bb = s - a;
    e = (a - (s - bb)) + (b - bb);
    return s;
}

// x - lse of a float x as th + tl: x - m is exact as a pair (TwoSum), then the pair of
// ls is taken off, so th + tl carries an error of about 2^-48 |x - lse|. th is +-inf or
// NaN where x - lse is (x = -inf, a NaN row); tl is then meaningless. Under CuPy's
// -ftz=true a subnormal part is flushed, an absolute error below 2^-126 that cannot
// change exp(th) or th + tl.
__device__ __forceinline__ float shifted_pair(float x, const Shift& h, float& tl) {
    float ed, et;
    const float d = two_sum(x, -h.mf, ed);
    const float th = two_sum(d, -h.lh, et);
    tl = (et + ed) - h.ll;
    return th;
}

// x - lse, formed as (x - m) - ls: exact where x is near m whatever the size of m
// (logits of 1e4 or 3e38), so the error is relative to |x - lse|, not to |lse|.
__device__ __forceinline__ double shifted(double x, const Shift& h) { return (x - h.m) - h.ls; }

// exp(x - lse) rounded to T. For float the argument is the pair th + tl, so the result
// carries expf's error only (not |x - lse| ulps): exp(th + tl) = expf(th) (1 + tl).
// From th >= -87 the result is a normal float (e^-87 > 2^-126), which -ftz keeps; below
// e^-104 it rounds to 0 (e^-104 < 2^-150); the subnormal results between come from
// double exp through the explicit conversions. A NaN th (a NaN row) fails every test.
// The rare subnormal results, kept out of line so the common path stays short.
__device__ __noinline__ float exp_shift_subnormal(float x, double m, double ls) {
    return from_d<float>(exp((to_d(x) - m) - ls));
}
__device__ __forceinline__ float exp_shift(float x, const Shift& h) {
    float tl;
    const float th = shifted_pair(x, h, tl);
    if (th >= -87.0f) {
        const float r = expf(th);
        return fmaf(r, tl, r);
    }
    if (th < -104.0f) return 0.0f;
    if (th != th) return th;
    return exp_shift_subnormal(x, h.m, h.ls);
}
// exp((x - m) - ls) in double with exp's error and ls's own rounding (|ls| / 2 ulps)
// alone: both subtractions as exact pairs (TwoSum), their rounding errors added back
// through the derivative, as the float pair does. The argument rounded once would cost
// |x - lse| / 2 ulps of the result (35 at x - lse = -70): the contract allows that (it
// is exp's condition number), and so did these kernels before; numpy's exp(x - m) / S
// pays it where x - m rounds. x = -inf gives 0, a NaN row NaN.
__device__ __forceinline__ double exp_shift_d(double x, double m, double ls) {
    double ed, et;
    const double d = two_sum(x, -m, ed);
    const double th = two_sum(d, -ls, et);
    const double r = exp(th);
    return r > 0.0 ? fma(r, et + ed, r) : r;
}
__device__ __forceinline__ double exp_shift(double x, const Shift& h) {
    return exp_shift_d(x, h.m, h.ls);
}

// NaN-propagating maximum, in the row's own type: the maximum of floats is one of
// them, so it is found in float and crosses to double once per tile, not per element.
// (Under -ftz two subnormals compare equal; either is then within 2^-126 of the true
// maximum, which changes no exp(x - m) and no m + ls.)
template <typename T>
__device__ __forceinline__ T nanmax(T a, T b) { return (b > a || b != b) ? b : a; }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// One instruction where the comparisons above take four (max.NaN: sm_80 and later;
// without .ftz, so subnormals compare as themselves). Any NaN operand gives NaN.
template <>
__device__ __forceinline__ float nanmax<float>(float a, float b) {
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
#endif
template <typename T>
__device__ __forceinline__ T neg_inf();
template <>
__device__ __forceinline__ float neg_inf<float>() { return -sc_inff(); }
template <>
__device__ __forceinline__ double neg_inf<double>() { return -sc_inf(); }

// A thread's running sum of exp terms (each in [0, 1], or NaN) of a row of T, or of
// softmax_backward's products (of either sign). A float
// row's terms are summed in double, 2^29 times more finely than its result rounds. A
// double row's are compensated (TwoSum): summed plainly, the thread holding a row's
// dominant term rounded each of its later terms against it, all the same way (terms
// far below half its ULP were dropped), which reached 26 ULPs of the kit's metric
// (tolerance 8) on softmax rows of 100000 float64 classes with one class 40 above
// the rest. The row's fold adds the threads' pairs the same way (row_sum below).
template <typename T>
struct ExpSum {
    double s = 0.0;
    __device__ __forceinline__ void add(double v) { s += v; }
    __device__ __forceinline__ void scale(double g) { s *= g; }
    __device__ __forceinline__ void reset(double v) { s = v; }
    __device__ __forceinline__ double value() const { return s; }
};
template <>
struct ExpSum<double> {
    double s = 0.0, c = 0.0;  // the sum is s + c; c gathers the adds' rounding errors
    __device__ __forceinline__ void add(double v) {
        double e;
        s = two_sum(s, v, e);
        c += e;
    }
    __device__ __forceinline__ void scale(double g) {
        s *= g;
        c *= g;
    }
    __device__ __forceinline__ void reset(double v) {
        s = v;
        c = 0.0;
    }
    __device__ __forceinline__ double value() const { return s + c; }
};

// Fold a tile whose maximum is tm into the running (m, s), rescaling s when the
// maximum grows. Returns whether the tile's terms must still be added (relative to m).
template <typename T>
__device__ __forceinline__ bool stats_raise(double& m, ExpSum<T>& s, double tm) {
    if (tm != tm) { m = sc_nan(); s.reset(sc_nan()); return false; }
    if (tm > m) {
        // s == 0 when m == -inf; avoid exp(-inf - -inf) by testing m first
        if (m == -sc_inf()) s.reset(0.0); else s.scale(exp(m - tm));
        m = tm;
    }
    return m > -sc_inf() && m == m;
}

// log S of a row's sum S >= 1 (its maximum's term is exactly 1), carried as s + e: s
// the sum the kernels form (softmax's 1 / S), e the rounding errors of its adds (a
// float64 row's ExpSum, row_sum and the cluster's fold), so that s + e is the sum to far
// better than an ULP of s. Where the maximum dominates, S = 1 + t with t tiny, and s,
// rounded to a unit of 1, kept nothing of t below half of one: log(s) made logsumexp of
// [0, -40] 0 for 4.2e-18 (SciPy's log1p of the rest is exact), that of [0, -20] 3e-8 of
// itself off, and log_softmax's largest entry -log S 0 for -4.2e-18. So (h, r) = s + e
// as an exact pair (TwoSum: h rounded, r its error) and log S = log(h) + r / h: log is
// accurate to an ULP of itself near 1, and r / h is the first-order term of log(h + r)
// (the rest, about r^2 / 2, is below 2^-54 of log S), so log S is accurate relative to
// itself even where h is exactly 1. A float row's plain double sum carries no e; those
// whose sum is near 1 take it from the sum taken again (near_one_err). e = 0 (other
// float rows, and softmax, which keeps its bits): log(s), as log_sum gives it there,
// without the division.
__device__ __forceinline__ double log_sum(double s, double e) {
    double r;
    const double h = two_sum(s, e, r);
    return log(h) + r / h;
}

__device__ __forceinline__ Shift make_shift(double m, double s, double e = 0.0) {
    // NaN for a row with NaN or +inf (m NaN or +inf) and for an all -inf row
    if (m > -sc_inf() && m < sc_inf()) return shift_of(m, e == 0.0 ? log(s) : log_sum(s, e));
    return shift_of(sc_nan(), sc_nan());
}

// ---------------------------------------------------------------------------
// Kept exponentials: one exp per element for the ops that write exp(x - lse)
//
// softmax and the unsmoothed cross-entropy gradient need e_j = exp(x_j - m) in the
// statistics pass (for the sum) and a multiple of exp(x_j - lse) in the write pass.
// Their kernels keep e_j in the register cache in place of x_j and write e_j f with one
// factor per thread: a product per element where the write pass took a second exp.
// Where the whole row is cached, m is the row's maximum M (taken before any exp) and
// f = 1 / S (times the gradient's scale); otherwise m = mc, the thread's maximum over
// its cached slots, and f = exp(mc - lse). On the H200 the write pass's exp was what
// separated softmax from log_softmax (float64 32768 x 1000: 2.25x a copy against 1.36x).
//
// Accuracy as exp_shift's: for float, e_j is expf of x - mc carried as a float pair
// (the sum takes the same expf of the rounded difference, so its bits do not change)
// and f as a float pair, multiplied with the product's rounding error added back;
// results below the smallest normal float (which -ftz would flush) come from double.

// A thread's factor f as a double and as a float pair; big where the pair is not
// finite (a NaN row, or a gradient scale past the float range): double throughout.
struct Kept {
    double d;
    float h, l;
    bool big;
};

__device__ __forceinline__ Kept kept_of(double d) {
    Kept f;
    f.d = d;
    f.h = from_d<float>(d);
    f.l = from_d<float>(d - to_d(f.h));
    f.big = !(f.h < sc_inff());
    return f;
}

// f = scale exp(mc - lse) from the row's shift: 0 where mc = -inf (no term kept), NaN
// for a NaN row. Rows with slots past the register cache take it so. The argument
// (mc - m) - ls + log(scale) is a sum of pairs (TwoSum), its rounding errors added back
// as in exp_shift_d: rounded once, a thread whose maximum mc lies 70 below the row's
// would scale all its elements by a factor |mc - lse| / 2 ulps off.
__device__ __forceinline__ Kept kept_factor(double mc, double m, double ls, double scale) {
    double ed, et, eg;
    const double d = two_sum(mc, -m, ed);
    const double t = two_sum(d, -ls, et);
    const double th = two_sum(t, log(scale), eg);
    const double r = exp(th);
    return kept_of(r > 0.0 ? fma(r, (ed + et) + eg, r) : r);
}

// The same where every slot of the row is cached: stats_row then keeps exp(x - M), M the
// row's maximum, and f = scale / S, so that such rows take no log of S and no exp per
// thread (S is NaN where M is not finite).
__device__ __forceinline__ Kept kept_cached(double S, double scale) { return kept_of(scale / S); }

// The slot's kept exps, formed a slot at a time: the rare cases (the subnormal window of
// e, products below the smallest normal) are redone out of line for the whole slot, so
// that the common path carries one flag per element and one branch per slot, not the
// rare paths' conversions (which the compiler would predicate into every element).

// e_j of every element of a float slot: exp(x - m) from the pair x - mf (mf = (float)m,
// exact), as the common path forms it where x - m >= -87, from double in the subnormal
// window [-104, -87), 0 below it (and for -inf). Only called for a slot with an element
// in that window, so m is finite (a thread whose slots hold a NaN keeps no term, and a
// +inf maximum leaves every difference -inf or NaN).
template <int N>
__device__ __noinline__ Pack<float, N> kept_slot_low(Pack<float, N> p, double m) {
    const float mf = (float)m;
    Pack<float, N> o;
#pragma unroll
    for (int e = 0; e < N; ++e) {
        float dl;
        const float d = two_sum(p.v[e], -mf, dl);
        if (d >= -87.0f) {
            const float ev = expf(d);
            o.v[e] = fmaf(ev, dl, ev);
        } else {
            o.v[e] = d < -104.0f ? 0.0f : exp_shift_subnormal(p.v[e], m, 0.0);
        }
    }
    return o;
}

// A float row's maximum as add_slot's mf (double rows do not use it).
__device__ __forceinline__ float float_part(float m) { return m; }
__device__ __forceinline__ float float_part(double) { return 0.0f; }

// s += exp(x - m) over a cached slot (mf = (float)m); where keep, the slot becomes its
// exps (see above). The sum takes the same expf of the rounded difference as stats_pack.
template <int N>
__device__ __forceinline__ void add_slot(Pack<float, N>& p, double m, float mf,
                                         ExpSum<float>& s, bool keep) {
    Pack<float, N> ek;
    bool low = false;
#pragma unroll
    for (int e = 0; e < N; ++e) {
        float dl;
        const float d = two_sum(p.v[e], -mf, dl);
        const float ev = expf(d);
        s.add(to_d(ev));
        ek.v[e] = d >= -87.0f ? fmaf(ev, dl, ev) : 0.0f;
        low |= d < -87.0f && d >= -104.0f;
    }
    if (keep) p = low ? kept_slot_low<N>(p, m) : ek;
}
template <int N>
__device__ __forceinline__ void add_slot(Pack<double, N>& p, double m, float,
                                         ExpSum<double>& s, bool keep) {
#pragma unroll
    for (int e = 0; e < N; ++e) {
        double dl;  // x - m = d + dl exactly: a kept exp carries exp's error alone
        const double d = two_sum(p.v[e], -m, dl);
        const double ev = exp(d);
        s.add(ev);
        if (keep) p.v[e] = ev > 0.0 ? fma(ev, dl, ev) : ev;
    }
}

// e f rounded to float for a whole slot, in double: the slots that the pair cannot take.
template <int N>
__device__ __noinline__ Pack<float, N> scale_slot_double(Pack<float, N> p, double fd) {
    Pack<float, N> o;
#pragma unroll
    for (int e = 0; e < N; ++e) o.v[e] = from_d<float>(to_d(p.v[e]) * fd);
    return o;
}

// e f of a kept slot, rounded to T. A float slot with a product below the smallest
// normal (-ftz would flush it, and a subnormal e reads as 0) or a big f is formed in
// double, every element of it.
template <int N>
__device__ __forceinline__ Pack<float, N> scale_slot(const Pack<float, N>& p, const Kept& f) {
    Pack<float, N> o;
    bool slow = f.big;
#pragma unroll
    for (int e = 0; e < N; ++e) {
        const float ev = p.v[e];
        const float t = ev * f.h;
        const float r = t + fmaf(ev, f.l, fmaf(ev, f.h, -t));
        o.v[e] = r;
        slow |= r < 1.17549435e-38f && __float_as_int(ev) != 0;
    }
    return slow ? scale_slot_double<N>(p, f.d) : o;
}
template <int N>
__device__ __forceinline__ Pack<double, N> scale_slot(const Pack<double, N>& p, const Kept& f) {
    Pack<double, N> o;
#pragma unroll
    for (int e = 0; e < N; ++e) o.v[e] = p.v[e] * f.d;
    return o;
}

// ---------------------------------------------------------------------------
// Row reductions (group mode: blockDim.x <= 32; block mode: blockDim.y == 1)

__device__ __forceinline__ bool group_mode() { return blockDim.x <= 32; }

__device__ __forceinline__ i64 row_index() {
    return group_mode() ? (i64)blockIdx.x * blockDim.y + threadIdx.y : (i64)blockIdx.x;
}

// The lanes of this thread's warp that hold its row: all 32 in block mode, the
// aligned run of blockDim.x lanes of the row in group mode. A row's threads leave
// together (r >= rows), so the lanes a shuffle names are always all present.
__device__ __forceinline__ int row_lane0() {
    return group_mode() ? (int)((threadIdx.y * blockDim.x) & 31) : 0;
}
__device__ __forceinline__ unsigned row_mask() {
    return blockDim.x >= 32 ? SC_FULL_MASK : ((1u << blockDim.x) - 1u) << row_lane0();
}

// Butterfly over the row's lanes (offsets below blockDim.x, at most 16), folding with
// op. Where a row owns whole warps (blockDim.x >= 32) every condition a reduction is
// called under is the same for the whole warp, so the mask is the constant full one:
// with a mask computed at run time the compiler checks the warp's convergence before
// every shuffle (five more instructions a step). Narrower rows name their own lanes.
struct OpAdd {
    template <typename V>
    __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};
struct OpMax {
    template <typename V>
    __device__ __forceinline__ V operator()(V a, V b) const { return nanmax(a, b); }
};

// A sum s and the rounding errors c gathered with it, folded as one value
// (OpAddPair, below); a shuffle moves both.
struct SumPair {
    double s, c;
};
template <typename V>
__device__ __forceinline__ V shfl_xor(unsigned mask, V v, int o) {
    return __shfl_xor_sync(mask, v, o);
}
__device__ __forceinline__ SumPair shfl_xor(unsigned mask, SumPair p, int o) {
    return SumPair{__shfl_xor_sync(mask, p.s, o), __shfl_xor_sync(mask, p.c, o)};
}

template <typename V, typename Op>
__device__ __forceinline__ V lanes_fold(V v, Op op) {
    if (blockDim.x >= 32) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(SC_FULL_MASK, v, o));
    } else {
        const unsigned mask = row_mask();
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            if (o < (int)blockDim.x) v = op(v, shfl_xor(mask, v, o));
    }
    return v;
}

// The row's sum of every thread's v. Every lane of a butterfly ends with the same bits:
// at each step lanes i and i ^ o add the same two values, a + b and b + a, which
// round alike. In block mode every thread then adds the warps' partials in index order.
__device__ __forceinline__ double row_sum(double v, double* sm) {
    v = lanes_fold(v, OpAdd());
    if (group_mode()) return v;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();  // the previous reduction has finished reading sm
    if (lane == 0) sm[w] = v;
    __syncthreads();
    double t = sm[0];
    for (int k = 1; k < nw; ++k) t += sm[k];
    return t;
}

// The row's sum of the threads' sums of exps (ExpSum). A double row's in block mode
// adds (s, c) pairs, each step's s by TwoSum, so that no step rounds against a
// dominant partial (the butterfly and the warps' partials took up to 37 roundings at
// 1024 threads, half an ULP of the largest partial each); every lane still ends with
// the same bits, as a TwoSum's error is the exact a + b - s whichever operand comes
// first. The warps' pairs go through sm[0, 32) and sm[32, 64) (row_max's slots, free
// between reductions). Group mode, a few terms a thread, and float rows: row_sum.
// err (float64 rows whose log S is taken, see log_sum; else null): the sum's error e,
// s + e the sum to far better than an ULP of s, 0 where s is not finite. In block mode
// the rounding error of s + c; in group mode each thread's s + c and its error, folded
// as pairs, so that s keeps the plain butterfly's bits and e gathers its steps' errors.
// Float rows carry none: 0.
__device__ __forceinline__ double row_sum(const ExpSum<float>& a, double* sm,
                                          double* err = nullptr) {
    if (err) *err = 0.0;
    return row_sum(a.value(), sm);
}
// (s, c) += (bs, bc), s by TwoSum: one step of the pairs' fold.
__device__ __forceinline__ void add_pair(double& s, double& c, double bs, double bc) {
    double e;
    s = two_sum(s, bs, e);
    c = (c + bc) + e;
}
struct OpAddPair {
    __device__ __forceinline__ SumPair operator()(SumPair a, SumPair b) const {
        add_pair(a.s, a.c, b.s, b.c);
        return a;
    }
};
// The pairs' butterfly over the row's lanes: lanes_fold of add_pair.
__device__ __forceinline__ void lanes_fold_pair(double& s, double& c) {
    const SumPair p = lanes_fold(SumPair{s, c}, OpAddPair());
    s = p.s;
    c = p.c;
}
// e of a sum s: 0 where s is not finite (a NaN row's e is meaningless, and log_sum
// must leave its log(s) as it is)
__device__ __forceinline__ double finite_err(double s, double e) { return s - s == 0.0 ? e : 0.0; }
__device__ __forceinline__ double row_sum(const ExpSum<double>& a, double* sm,
                                          double* err = nullptr) {
    if (group_mode()) {
        if (!err) return row_sum(a.value(), sm);
        double c;
        double s = two_sum(a.s, a.c, c);  // value()'s bits
        lanes_fold_pair(s, c);            // s: lanes_fold's bits
        *err = finite_err(s, c);
        return s;
    }
    double s = a.s, c = a.c;
    lanes_fold_pair(s, c);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();  // the previous reduction has finished reading sm
    if (lane == 0) {
        sm[w] = s;
        sm[32 + w] = c;
    }
    __syncthreads();
    s = sm[0];
    c = sm[32];
    for (int k = 1; k < nw; ++k) add_pair(s, c, sm[k], sm[32 + k]);
    if (!err) return s + c;
    double e;
    const double t = two_sum(s, c, e);  // s + c's bits
    *err = finite_err(t, e);
    return t;
}

// The row's maximum of every thread's v, in the row's own type (a float row's
// maximum is one of its floats: one shuffle per step, not two): a NaN-propagating
// butterfly over the row's lanes, then in block mode the warps' maxima in index
// order. Every lane ends with the same value (a maximum does not depend on the
// order), so no broadcast is needed.
template <typename T>
__device__ __forceinline__ T row_max(T v, double* sm) {
    v = lanes_fold(v, OpMax());
    if (group_mode()) return v;
    T* smt = reinterpret_cast<T*>(sm + 32);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();  // the previous reduction has finished reading sm
    if (lane == 0) smt[w] = v;
    __syncthreads();
    v = smt[0];
    for (int k = 1; k < nw; ++k) v = nanmax(v, smt[k]);
    return v;
}

// The row's (m, s) from every thread's partial (m, s) (m a value of the row, or
// -inf): the maximum first (row_max), then each thread rescales its s to that
// maximum once and the sums are added as in row_sum. One exp per thread and row:
// merging the pairs step by step took one per butterfly step, five in a warp, which
// dominated rows of a few hundred classes. A thread whose m is -inf holds s = 0 and
// adds 0; a NaN or +inf maximum makes the row NaN (make_shift). Rows held wholly in
// registers take their maximum before any exp instead (stats_row). se: as row_sum's err
// (left as it is for a NaN row).
template <typename T>
__device__ __forceinline__ void row_stats(double& m, double& s, ExpSum<T>& acc, double* sm,
                                          double* se) {
    const double mm = to_d(row_max(from_d<T>(m), sm));  // exact: m is a T value
    if (mm != mm || mm == sc_inf()) {
        m = mm;
        s = sc_nan();
        return;
    }
    // s needs no rescale where m == mm, and is 0 where m == -inf
    if (!(m == mm || m == -sc_inf())) acc.scale(exp(m - mm));
    m = mm;
    s = row_sum(acc, sm, se);
}

// ---------------------------------------------------------------------------
// Split rows (sm_90 and later): a row over the CL blocks of a thread-block cluster
//
// A row wider than one block's registers hold (float32 past 16384 classes at 1024
// threads, float64 past 8192) loads its tail a slot at a time, each load waiting on
// the previous slot's arithmetic ("Tail loops"). Here the CL blocks of a cluster
// (__cluster_dims__, CL = 2, 4 or 8, consecutive in x) share a row: the block of rank k
// caches the row's slots [k P, k P + P), P = ceil(nslot / CL), which the launch keeps
// within its K blockDim.x, so every slot is loaded before any is used, as in a row
// one block holds. The row's maximum, then its sum of exp(x - M), are each block's
// (row_max, row_sum over its segment) folded over the cluster's blocks in rank order
// by every thread, each read from its block's shared memory (distributed shared
// memory, cluster_ld): the same order in every block, so the same bits, and the
// order depends on C alone (the launch takes CL and the block from C and the dtype).
// A fold ends with a cluster barrier, so no block reuses or leaves its shared memory
// while another may still read it. Every block of a cluster takes the same branches
// around the folds (M, and so whether the row is finite, is the cluster's).
// Accuracy as a row held in one block's registers: exp(x - M) summed in double, M the
// row's maximum. Each split kernel is its one-block kernel with CL > 1: row_segment
// gives its block's segment, stats_row folds the statistics, and the kernel folds
// its own sums (the backward passes' dot product or gradient sum, the cross-entropy
// gradient's weights and smoothing sums) with cluster_fold. Older architectures get
// entry points that trap; the launch takes them only on sm_90 and later.
//
// Below: the block's rank, a barrier of the cluster's threads, another block's shared
// memory, a value folded over the cluster's blocks, and a block's segment of its row.

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define SC_SPLIT 1
#define SC_CLUSTER_DIMS(CL) __cluster_dims__(CL, 1, 1)
__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
// every thread of the cluster arrives; a block's shared-memory stores before it are
// seen by the loads of any block after it. The .aligned form wants each warp to
// execute it converged: every caller reaches it with the whole warp (no divergent
// condition around it), and __syncwarp reconverges the warp after thread 0's store
// (the unaligned form made ptxas spill more: the float32 CE gradient 20 bytes
// where 8).
__device__ __forceinline__ void cluster_sync() {
    __syncwarp();
    asm volatile(
        "barrier.cluster.arrive.release.aligned;\n\t"
        "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// the double at p (this block's shared memory) in the block of the given rank
__device__ __forceinline__ double cluster_ld(const double* p, unsigned rank) {
    unsigned a, ra;
    double v;
    asm volatile("{\n\t.reg .u64 g;\n\tcvta.to.shared.u64 g, %1;\n\tcvt.u32.u64 %0, g;\n\t}"
                 : "=r"(a)
                 : "l"(p));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(ra) : "r"(a), "r"(rank));
    asm volatile("ld.shared::cluster.f64 %0, [%1];" : "=d"(v) : "r"(ra) : "memory");
    return v;
}
#elif defined(__CUDA_ARCH__)  // no clusters: the split entry points trap at once
#define SC_SPLIT 0
#define SC_CLUSTER_DIMS(CL)
__device__ __forceinline__ unsigned cluster_rank() {
    __trap();
    return 0;
}
__device__ __forceinline__ void cluster_sync() { __trap(); }
__device__ __forceinline__ double cluster_ld(const double*, unsigned) {
    __trap();
    return 0.0;
}
#else  // the tests' host emulation
#define SC_SPLIT 1
#define SC_CLUSTER_DIMS(CL)
__device__ __forceinline__ unsigned cluster_rank() { return emu_cluster_rank(); }
__device__ __forceinline__ void cluster_sync() { emu_cluster_sync(); }
__device__ __forceinline__ double cluster_ld(const double* p, unsigned rank) {
    return emu_cluster_ld(p, rank);
}
#endif

// v (the same in every thread of the block) folded with op over the cluster's blocks in
// rank order; slot is this block's scratch double for it. Every thread ends with the
// same bits. Values travel as doubles: a float is exact in one (to_d and from_d, not
// C casts, which -ftz would make flush a subnormal maximum).
template <int CL, typename V, typename Op>
__device__ __forceinline__ V cluster_fold(V v, Op op, double* slot) {
    if (threadIdx.x == 0) *slot = to_d(v);
    cluster_sync();
    V t = from_d<V>(cluster_ld(slot, 0));
#pragma unroll
    for (int k = 1; k < CL; ++k) t = op(t, from_d<V>(cluster_ld(slot, (unsigned)k)));
    cluster_sync();  // every block has read every slot
    return t;
}

// A sum s with its error e (row_sum's err; the same in every thread of the block) added
// over the cluster's blocks in rank order as pairs (add_pair): s with cluster_fold's
// bits, e gathering the blocks' errors and the adds' own; 0 where s is not finite.
// slot[0, 2) is this block's scratch for them.
template <int CL>
__device__ __forceinline__ double cluster_sum(double s, double& e, double* slot) {
    if (threadIdx.x == 0) {
        slot[0] = s;
        slot[1] = e;
    }
    cluster_sync();
    double t = cluster_ld(slot, 0), c = cluster_ld(slot + 1, 0);
#pragma unroll
    for (int k = 1; k < CL; ++k)
        add_pair(t, c, cluster_ld(slot, (unsigned)k), cluster_ld(slot + 1, (unsigned)k));
    cluster_sync();  // every block has read every slot
    e = finite_err(t, c);
    return t;
}

// The row a block works on, and the slots of it the block takes: s0 + [0, nslot). The
// whole row (C / N slots, s0 = 0) but where it is split over the CL > 1 blocks of a
// cluster (gridDim.x = rows * CL): the segment of the block of rank k, slots
// [k P, k P + P) with P = ceil(C / N / CL), the last block's fewer.
struct RowSeg {
    i64 r, s0, nslot;
};
template <int N, int CL>
__device__ __forceinline__ RowSeg row_segment(i64 C) {
    if (CL == 1) return RowSeg{row_index(), 0, C / N};
    const i64 all = C / N, per = (all + CL - 1) / CL;
    const i64 s0 = (i64)cluster_rank() * per;
    const i64 nslot = s0 >= all ? 0 : (all - s0 < per ? all - s0 : per);
    return RowSeg{(i64)(blockIdx.x / CL), s0, nslot};
}

// A row kernel's shared scratch: row_sum's 32 doubles and row_max's 32, and for a row
// split over a cluster the folds' slots (sm[64], and sm[65] for cluster_sum's error).
// The host emulation runs a cluster's blocks at once, so a split row's blocks take their
// own (cta_scratch) there.
#ifdef __CUDA_ARCH__
#define SC_ROW_SCRATCH(CL) __shared__ double sm[(CL) > 1 ? 66 : 64];
#else
#define SC_ROW_SCRATCH(CL)            \
    __shared__ double sm_static[64]; \
    double* const sm = (CL) > 1 ? emu_cta_scratch() : sm_static;
#endif

// ---------------------------------------------------------------------------
// Staged tails (block mode): slots past the register cache kept in shared memory
//
// A thread's slots v >= K * nt (the row's "tail") are read by the statistics pass and
// read again by the write pass, so rows wider than the register cache (float32 past
// 16384 classes at 1024 threads, float64 past 8192) read their tail twice. Where the
// launch gives the block dynamic shared memory, the statistics pass also stores the
// row's first ns tail slots there (slot v at index j = v - K * nt) and the write pass
// takes them from there. Each thread takes back only the slots it stored itself (both
// passes step v by nt from the same start), so no barrier stands between the store and
// the load; the bits are the same either way, so no result depends on ns. ns = 0 (no
// dynamic shared memory; group mode, whose blocks hold several rows) is the plain
// re-read. softmax_backward stages both of its operands, ns slots of each (the
// gradient's at [j], the probabilities' at [ns + j]; float rows only), and
// log_softmax_backward the gradient (it reads the log-probabilities once, in the
// write pass). Nothing of it stays in registers between the passes (the float64
// kernels are at their register bound): each tail loop reads ns from the launch and
// counts its own j, and the slots' address is a constant.
#ifdef __CUDA_ARCH__
extern __shared__ double2 sc_stage[];  // 16-byte aligned: a float or double pack
#endif

template <typename T, int N>
__device__ __forceinline__ Pack<T, N>* stage_slots() {
#ifdef __CUDA_ARCH__
    return reinterpret_cast<Pack<T, N>*>(sc_stage);
#else  // the tests' host emulation
    unsigned bytes;
    return reinterpret_cast<Pack<T, N>*>(emu_dynamic_shared(bytes));
#endif
}

// Tail slots a thread's row may stage (summed over its threads): 0 in group mode.
template <typename T, int N>
__device__ __forceinline__ int stage_count() {
    if (group_mode()) return 0;
    unsigned bytes;
#ifdef __CUDA_ARCH__
    // volatile: read where it is used, not held in a register across a pass
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
#else
    emu_dynamic_shared(bytes);
#endif
    return (int)(bytes / sizeof(Pack<T, N>));
}

// Tail slot v (tail index j) as the statistics pass read it: staged where j < ns.
template <typename T, int N, bool A>
__device__ __forceinline__ Pack<T, N> tail_ld(const T* row, i64 v, int j, int ns) {
    return j < ns ? stage_slots<T, N>()[j] : ld<T, N, A>(row, v);
}

// Tail loops: a thread's slots past the register cache, v = v0, v0 + nt, ... below
// nslot, with the tail index j alongside. load(v, j) reads a slot (or a pair of them,
// P), use(v, j, p) does the pass's work on it. With a batch B > 1 a thread reads B
// slots before it uses any of them, then uses them in the same order, so every sum is
// formed as with B = 1 and every result bit is the same; the loads of a batch are in
// flight together, where each slot's load otherwise waits for the previous slot's
// arithmetic (one 16-byte load of each thread in flight: 16 KiB an SM at 1024 threads,
// which at about a microsecond's latency bounds a read near 2 TB/s over an H100's 132
// SMs, what logsumexp of 1024 x 128256 floats read there). B is SC_TAIL_BATCH_F32 for
// float rows and SC_TAIL_BATCH_F64 for double ones, 1 as shipped until a GPU has timed
// them (tools/bench_gpu.py, "tail batch" lines; _kernels.TAIL_BATCH). What ptxas makes
// of them (sm_90, tools/sass_counts.py --define SC_TAIL_BATCH_F32=2): float at B = 2
// spills only in the probability-target loss (32 bytes), at B = 4 16-24 bytes in the
// class-index cross-entropy kernels; double at B = 2 spills more where it spilled
// already (softmax 8 to 24 bytes, the cross-entropy gradient 112 to 208).
#ifndef SC_TAIL_BATCH_F32
#define SC_TAIL_BATCH_F32 1
#endif
#ifndef SC_TAIL_BATCH_F64
#define SC_TAIL_BATCH_F64 1
#endif

template <typename T, typename P, typename Load, typename Use>
__device__ __forceinline__ void tail_loop(i64 v, i64 nslot, int nt, int j, Load load,
                                          Use use) {
    constexpr int B = sizeof(T) == 4 ? SC_TAIL_BATCH_F32 : SC_TAIL_BATCH_F64;
    if (B > 1) {
        for (; v + (i64)(B - 1) * nt < nslot; v += (i64)B * nt, j += B * nt) {
            P p[B];
#pragma unroll
            for (int b = 0; b < B; ++b) p[b] = load(v + (i64)b * nt, j + b * nt);
#pragma unroll
            for (int b = 0; b < B; ++b) use(v + (i64)b * nt, j + b * nt, p[b]);
        }
    }
    for (; v < nslot; v += nt, j += nt) use(v, j, load(v, j));
}

// Two operands' slots, for the tail loops that read both.
template <typename T, int N>
struct Pack2 {
    Pack<T, N> a, b;
};

// ---------------------------------------------------------------------------
// Pass 1 helpers: running (m, s) over cached slots, then over the rest

template <typename T, int N, int K, bool A>
__device__ __forceinline__ void load_cache(const T* row, i64 nslot, Pack<T, N> (&c)[K]) {
    const int tid = threadIdx.x, nt = blockDim.x;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) c[k] = ld<T, N, A>(row, v);
    }
}

template <typename T, int N, bool A>
__device__ __forceinline__ void stats_pack(double& m, ExpSum<T>& s, const Pack<T, N>& p) {
    T tm = neg_inf<T>();
#pragma unroll
    for (int e = 0; e < N; ++e) tm = nanmax(tm, p.v[e]);
    if (stats_raise(m, s, to_d(tm))) {
#pragma unroll
        for (int e = 0; e < N; ++e) s.add(exp_term(p.v[e], m));
    }
}

// The thread's maximum over its cached slots, in the row's type (-inf where it has
// none).
template <typename T, int N, int K>
__device__ __forceinline__ T cached_max(const Pack<T, N> (&c)[K], i64 nslot) {
    const int tid = threadIdx.x, nt = blockDim.x;
    T tm = neg_inf<T>();
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
#pragma unroll
            for (int e = 0; e < N; ++e) tm = nanmax(tm, c[k].v[e]);
        }
    }
    return tm;
}

// s += exp(x - m) over the thread's cached slots, m = tm (a finite value of the row),
// each slot left as its exps where keep (add_slot).
template <typename T, int N, int K>
__device__ __forceinline__ void add_cached(Pack<T, N> (&c)[K], i64 nslot, T tm,
                                           ExpSum<T>& s, bool keep) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const double m = to_d(tm);
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) add_slot<N>(c[k], m, float_part(tm), s, keep);
    }
}

// A float row's sum S near 1, taken again. Its terms are summed plainly in double
// (ExpSum<float>), so once a partial holds the maximum's 1, every later add rounds to
// the 2^-52 steps of [1, 2): S - 1 is off by about C 2^-53 at most for C terms, under
// 2^-27 of S - 1 (an eighth of a float32 ULP of log S) unless S - 1 is itself below
// C 2^-26 (the maximum leads every other logit by about 18 or more; the numba backend
// takes the same bound). There log(s) lost it all: logsumexp of float32 [0, -40] was 0
// for 4.2e-18 (float32 holds it; SciPy gives it exactly), rows of 3000 classes 33 to
// 45 below 0 had log S 1e4 of its float32 ulps off. So where 1 <= s < 1 + C 2^-26
// (near_one: a test on the folded s, the same in every thread of the row, or of the
// cluster's blocks) the row's terms are summed again: n1, how many are exactly 1 (the
// maximum's, and ties), and rest, the double sum of the others, each folded over the
// row (and the cluster) as s was; (h, r) = TwoSum(n1, rest) is the sum to far better
// than an ULP, and the result e = (h - s) + r (h - s exact: both lie within a factor
// 2) its error against s, which log_sum takes. s keeps its bits (softmax's 1 / S).
// The terms are the first pass's, exp(x - M) as exp_term forms it, from x read again:
// from memory, or from the staged slots where the statistics pass left some (the row
// is not written before this). Out of line, and not from the register cache: inlined,
// the second sum's registers beside the cached slots made ptxas spill on the common
// path (sm_90: log_softmax float32 v1 68 bytes, the probability-target loss 32, the
// split CE gradient 16) and doubled the kernels' code. Other rows pay the test alone
// (a few instructions a row); float64 rows carry e from their compensated sums already.
#define SC_NEAR_ONE_F32 1.4901161193847656e-8  // 2^-26

__device__ __forceinline__ bool near_one(double s, i64 C) {
    return s >= 1.0 && s < 1.0 + (double)C * SC_NEAR_ONE_F32;  // false for NaN
}

template <typename T, int N, int K, bool A, int CL>
__device__ __noinline__ double near_one_err(const T* row, i64 nslot, double m, double s,
                                            bool stage, double* sm) {
    const int tid = threadIdx.x, nt = blockDim.x;
    const int ns = stage ? stage_count<T, N>() : 0;
    double n1 = 0.0, rest = 0.0;
    for (i64 v = tid; v < nslot; v += nt) {
        const i64 j = v - (i64)K * nt;  // the tail index, staged below ns
        const Pack<T, N> p = j >= 0 && j < ns ? stage_slots<T, N>()[j] : ld<T, N, A>(row, v);
#pragma unroll
        for (int q = 0; q < N; ++q) {
            const double t = exp_term(p.v[q], m);
            const bool one = t == 1.0;
            n1 += one ? 1.0 : 0.0;
            rest += one ? 0.0 : t;
        }
    }
    n1 = row_sum(n1, sm);
    rest = row_sum(rest, sm);
    if (CL > 1) {
        n1 = cluster_fold<CL>(n1, OpAdd(), sm + 64);
        rest = cluster_fold<CL>(rest, OpAdd(), sm + 64);
    }
    double r;
    const double h = two_sum(n1, rest, r);
    return (h - s) + r;
}

// (m, s) of the whole row; the first K slots of the thread are left in c: as read, or
// where keep, as exp(x - mc) (add_slot). mc is the row's maximum where the whole row
// is cached, else the thread's maximum over its cached slots (-inf, all kept terms 0,
// where it has none). CL > 1: row is the block's segment of a row split over the
// cluster's CL blocks (which the launch makes fit the cache), and (m, s) the whole
// row's, folded over the cluster. se (the ops that take log S, see log_sum; else
// null): s's error e, 0 where s is not finite: a float64 row's from its compensated
// sums, a float row's from its sum taken again where it is near 1 (near_one_err; C,
// the whole row's classes, sets how near), else 0.
template <typename T, int N, int K, bool A, int CL = 1>
__device__ __forceinline__ void stats_row(const T* row, i64 nslot, Pack<T, N> (&c)[K],
                                          double& m, double& s, double* sm,
                                          bool keep = false, double* mc = nullptr,
                                          bool stage = false, double* se = nullptr,
                                          i64 C = 0) {
    const int tid = threadIdx.x, nt = blockDim.x;
    if (se) *se = 0.0;
    double* const se64 = sizeof(T) == 8 ? se : nullptr;  // the compensated sums' error
    load_cache<T, N, K, A>(row, nslot, c);
    m = -sc_inf();
    ExpSum<T> acc;  // the thread's terms; s is then the row's sum
    T tm = cached_max<T, N, K>(c, nslot);
    if (CL > 1 || nslot <= (i64)K * nt) {
        // The whole row is in registers (a choice per launch): its maximum M comes
        // first, so the terms are exp(x - M) at once and no thread rescales its sum,
        // which saves a double exp per thread and row.
        tm = row_max(tm, sm);
        if (CL > 1) tm = cluster_fold<CL>(tm, OpMax(), sm + 64);
        m = to_d(tm);
        const bool fin = m > -sc_inf() && m < sc_inf();  // the same for the whole row
        if (fin) {
            add_cached<T, N, K>(c, nslot, tm, acc, keep);
            s = row_sum(acc, sm, se64);
            if (CL > 1)
                s = se64 ? cluster_sum<CL>(s, *se64, sm + 64)
                         : cluster_fold<CL>(s, OpAdd(), sm + 64);
        } else {
            // -inf (no term) or NaN, +inf: the whole row is NaN (make_shift), and so is
            // the kept factor 1 / S, which turns whatever the cache holds into NaN
            s = sc_nan();
        }
        if (sizeof(T) == 4 && se && near_one(s, C))
            *se = near_one_err<T, N, K, A, CL>(row, nslot, m, s, false, sm);
        if (keep) *mc = m;
        return;
    }
    if (stats_raise(m, acc, to_d(tm))) {  // m = tm now
        add_cached<T, N, K>(c, nslot, tm, acc, keep);
    } else if (keep) {  // no finite maximum: -inf (terms 0) or NaN (the row is NaN)
#pragma unroll
        for (int k = 0; k < K; ++k)
#pragma unroll
            for (int e = 0; e < N; ++e) c[k].v[e] = (T)0;
    }
    if (keep) *mc = m;
    const int ns = stage ? stage_count<T, N>() : 0;
    tail_loop<T, Pack<T, N>>(
        tid + (i64)K * nt, nslot, nt, tid, [&](i64 v, int) { return ld<T, N, A>(row, v); },
        [&](i64, int j, const Pack<T, N>& p) {
            if (j < ns) stage_slots<T, N>()[j] = p;
            stats_pack<T, N, A>(m, acc, p);
        });
    row_stats<T>(m, s, acc, sm, se64);
    if (sizeof(T) == 4 && se && near_one(s, C))
        *se = near_one_err<T, N, K, A, CL>(row, nslot, m, s, stage, sm);
}

// ---------------------------------------------------------------------------
// softmax / log_softmax / logsumexp

// x - lse rounded to T; for float, th + tl rounded once (th alone where it is not
// finite: x = -inf gives -inf, a NaN row NaN).
__device__ __forceinline__ double log_shift(double x, const Shift& h) { return shifted(x, h); }
__device__ __forceinline__ float log_shift(float x, const Shift& h) {
    float tl;
    const float th = shifted_pair(x, h, tl);
    return (th - th == 0.0f) ? th + tl : th;
}

// The thread's cached slots of a softmax row (MODE 0: c holds the kept exps, written
// times f) or a log_softmax row (MODE 1: x - lse), into orow.
template <typename T, int N, int K, bool A, int MODE>
__device__ __forceinline__ void write_cached(const Pack<T, N> (&c)[K], i64 nslot, T* orow,
                                             const Kept& f, const Shift& lse) {
    const int tid = threadIdx.x, nt = blockDim.x;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
            Pack<T, N> o;
            if (MODE == 0) {
                o = scale_slot<N>(c[k], f);
            } else {
#pragma unroll
                for (int e = 0; e < N; ++e) o.v[e] = log_shift(c[k].v[e], lse);
            }
            st<T, N, A>(orow, v, o);
        }
    }
}

// MODE 0: softmax, 1: log_softmax; CL > 1: the row split over a cluster ("Split rows")
template <typename T, int N, int K, bool A, int MODE, int CL = 1>
__device__ void softmax_impl(const T* x, T* out, i64 rows, i64 C) {
    SC_ROW_SCRATCH(CL)
    const RowSeg seg = row_segment<N, CL>(C);
    const i64 r = seg.r, nslot = seg.nslot;
    if (r >= rows) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* xr = x + r * C + seg.s0 * N;
    T* orow = out + r * C + seg.s0 * N;
    Pack<T, N> c[K];
    double m, s, mc, se;
    // softmax keeps exp; log_softmax takes log S with s's error (log_sum), softmax
    // without it (its bits: 1 / S, or exp(x - m - log(s)) past the register cache)
    stats_row<T, N, K, A, CL>(xr, nslot, c, m, s, sm, MODE == 0, &mc, true,
                              MODE == 1 ? &se : nullptr, C);
    // softmax rows held in registers need no log-sum-exp (uniform per row)
    const bool cached = MODE == 0 && (CL > 1 || nslot <= (i64)K * nt);
    Shift lse;
    if (!cached) lse = MODE == 1 ? make_shift(m, s, se) : make_shift(m, s);
    Kept f;
    if (MODE == 0) f = cached ? kept_cached(s, 1.0) : kept_factor(mc, lse.m, lse.ls, 1.0);
    write_cached<T, N, K, A, MODE>(c, nslot, orow, f, lse);
    if (CL > 1) return;  // a split row is all in registers
    const int ns = stage_count<T, N>();
    tail_loop<T, Pack<T, N>>(
        tid + (i64)K * nt, nslot, nt, tid,
        [&](i64 v, int j) { return tail_ld<T, N, A>(xr, v, j, ns); },
        [&](i64 v, int, const Pack<T, N>& p) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e)
                o.v[e] = MODE == 0 ? exp_shift(p.v[e], lse) : log_shift(p.v[e], lse);
            st<T, N, A>(orow, v, o);
        });
}

// SHIFT = 0: each row's log-sum-exp, as T (logsumexp_rows);
// SHIFT = 1: each row's Shift (m, ls) as two doubles (for the Jacobians).
// CL > 1: the row split over a cluster, written by its first block.
template <typename T, int N, int K, bool A, int SHIFT, typename OutT, int CL = 1>
__device__ void lse_impl(const T* x, OutT* out, i64 rows, i64 C) {
    SC_ROW_SCRATCH(CL)
    const RowSeg seg = row_segment<N, CL>(C);
    const i64 r = seg.r;
    if (r >= rows) return;
    Pack<T, N> c[K];
    double m, s, se;
    stats_row<T, N, K, A, CL>(x + r * C + seg.s0 * N, seg.nslot, c, m, s, sm, false, nullptr,
                              false, &se, C);
    if (threadIdx.x == 0 && seg.s0 == 0) {
        const Shift h = make_shift(m, s, se);
        if (SHIFT) {
            out[2 * r] = h.m;
            out[2 * r + 1] = h.ls;
        } else {
            out[r] = from_d<OutT>(h.m + h.ls);
        }
    }
}

// ---------------------------------------------------------------------------
// logsumexp with factors (SciPy's b): m + log|sum_j b_j exp(x_j - m)| and its sign
//
// Two passes over the row's x and b, without a register cache: the largest x among
// the terms (b_j != 0; a NaN factor counts) and the largest |b_j|, then the sum of
// b_j exp(x_j - m) in double (a float row's x_j - m exact there), compensated for
// double rows (ExpSum, row_sum), its log as log_sum takes it. A zero factor removes
// its term whatever x_j holds. NaN, with a NaN sign, for a row with no term, with a
// NaN or +inf x among its terms, or with a NaN or infinite factor; -inf with sign 0
// where the terms cancel exactly. A double row's factors past 2^600 are scaled by
// 2^-600 (exactly), so that no sum of them overflows: a float row's cannot. b's
// rows are bstride elements apart: C, or 0 where every row takes the same factors.
template <typename T, int N, bool A>
__device__ void lse_weighted_impl(const T* x, const T* b, i64 bstride, T* out, T* sign,
                                  i64 rows, i64 C) {
    SC_ROW_SCRATCH(1)
    const i64 r = row_index();
    if (r >= rows) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* xr = x + r * C;
    const T* br = b + r * bstride;  // bstride 0: one row of factors for every row
    const i64 nslot = C / N;
    T m = neg_inf<T>(), bm = (T)0;
    for (i64 v = tid; v < nslot; v += nt) {
        const Pack<T, N> px = ld<T, N, A>(xr, v), pb = ld<T, N, A>(br, v);
#pragma unroll
        for (int e = 0; e < N; ++e) {
            const T f = pb.v[e];
            if (f != (T)0) {  // true for NaN
                m = nanmax(m, px.v[e]);
                bm = nanmax(bm, f < (T)0 ? -f : f);
            }
        }
    }
    // every lane of the row ends with the same m and bm (row_max), so the branch
    // below, and the reduction in it, is taken by the whole row or by none of it
    const double md = to_d(row_max(m, sm)), bd = to_d(row_max(bm, sm));
    double res = sc_nan(), sg = sc_nan();
    if (md > -sc_inf() && md < sc_inf() && bd < sc_inf()) {
        const bool scaled = bd > __longlong_as_double(0x6570000000000000LL);  // 2^600
        const double f = scaled ? __longlong_as_double(0x1A70000000000000LL) : 1.0;
        ExpSum<T> acc;
        for (i64 v = tid; v < nslot; v += nt) {
            const Pack<T, N> px = ld<T, N, A>(xr, v), pb = ld<T, N, A>(br, v);
#pragma unroll
            for (int e = 0; e < N; ++e)
                if (pb.v[e] != (T)0) acc.add((to_d(pb.v[e]) * f) * exp(to_d(px.v[e]) - md));
        }
        double err = 0.0;
        const double s = row_sum(acc, sm, &err);
        if (s == 0.0) {
            res = -sc_inf();
            sg = 0.0;
        } else if (s == s) {
            // log|s + err| = log_sum(|s|, err with s's sign): log_sum's log(h) + r / h
            // holds for any h > 0, and TwoSum of the negated pair is the negated result
            const bool neg = s < 0.0;
            const double shift = scaled ? 600.0 * 0.6931471805599453 : 0.0;
            res = md + (log_sum(neg ? -s : s, neg ? -err : err) + shift);
            sg = neg ? -1.0 : 1.0;
        }
    }
    if (threadIdx.x == 0) {
        out[r] = from_d<T>(res);
        sign[r] = from_d<T>(sg);
    }
}

// ---------------------------------------------------------------------------
// Vector-Jacobian products


// out = probs * (grad - sum(grad * probs)); CL > 1: the row split over a cluster (the
// segment's dot product, folded; see ce_impl)
template <typename T, int N, int K, bool A, int CL = 1>
__device__ void softmax_backward_impl(const T* g, const T* p, T* out, i64 rows, i64 C) {
    SC_ROW_SCRATCH(CL)
    const RowSeg seg = row_segment<N, CL>(C);
    const i64 r = seg.r, s0 = seg.s0, nslot = seg.nslot;
    if (r >= rows) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* gr = g + r * C + s0 * N;
    const T* pr = p + r * C + s0 * N;
    T* orow = out + r * C + s0 * N;
    Pack<T, N> cg[K], cp[K];
    load_cache<T, N, K, A>(gr, nslot, cg);
    load_cache<T, N, K, A>(pr, nslot, cp);
    // a double row's products summed compensated, as its exps are (ExpSum): plainly,
    // the thread holding a dominant class's product rounded its later ones against
    // it, 8.1 ULPs of the kit's metric at 100000 classes with one class 40 above
    // the rest, 10.1 at 262144 (tolerance 16)
    ExpSum<T> acc;
    {
        double part = 0.0;  // the cached slots' products, K * N of them (8 doubles)
#pragma unroll
        for (int k = 0; k < K; ++k) {
            i64 v = tid + (i64)k * nt;
            if (v < nslot) {
#pragma unroll
                for (int e = 0; e < N; ++e) part += to_d(cg[k].v[e]) * to_d(cp[k].v[e]);
            }
        }
        acc.add(part);
    }
    // the tails of both operands staged, float rows only: the gradient's at [j], the
    // probabilities' at [ns + j] (a double row's two caches leave no register for it:
    // ptxas spilled cached slots across the reduction, at every row length)
    constexpr bool staging = sizeof(T) == 4;
    Pack<T, N>* const sg = stage_slots<T, N>();
    int ns = staging ? stage_count<T, N>() / 2 : 0;
    if (CL == 1)  // a split row is all in registers
        tail_loop<T, Pack2<T, N>>(
            tid + (i64)K * nt, nslot, nt, tid,
            [&](i64 v, int) { return Pack2<T, N>{ld<T, N, A>(gr, v), ld<T, N, A>(pr, v)}; },
            [&](i64, int j, const Pack2<T, N>& q) {
                if (staging && j < ns) {
                    sg[j] = q.a;
                    sg[ns + j] = q.b;
                }
                double part = 0.0;  // a slot's N products
#pragma unroll
                for (int e = 0; e < N; ++e) part += to_d(q.a.v[e]) * to_d(q.b.v[e]);
                acc.add(part);
            });
    double dot = row_sum(acc, sm);
    if (CL > 1) dot = cluster_fold<CL>(dot, OpAdd(), sm + 64);
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e)
                o.v[e] = from_d<T>(to_d(cp[k].v[e]) * (to_d(cg[k].v[e]) - dot));
            st<T, N, A>(orow, v, o);
        }
    }
    if (CL > 1) return;
    ns = staging ? stage_count<T, N>() / 2 : 0;
    tail_loop<T, Pack2<T, N>>(
        tid + (i64)K * nt, nslot, nt, tid,
        [&](i64 v, int j) {
            const bool staged = staging && j < ns;
            return Pack2<T, N>{staged ? sg[j] : ld<T, N, A>(gr, v),
                               staged ? sg[ns + j] : ld<T, N, A>(pr, v)};
        },
        [&](i64 v, int, const Pack2<T, N>& q) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e)
                o.v[e] = from_d<T>(to_d(q.b.v[e]) * (to_d(q.a.v[e]) - dot));
            st<T, N, A>(orow, v, o);
        });
}

__device__ __forceinline__ double exp_in(float x) { return x < -87.0f ? exp(to_d(x)) : to_d(expf(x)); }
__device__ __forceinline__ double exp_in(double x) { return exp(x); }

// out = grad - exp(log_probs) * sum(grad); CL > 1: the row split over a cluster
template <typename T, int N, int K, bool A, int CL = 1>
__device__ void log_softmax_backward_impl(const T* g, const T* lp, T* out, i64 rows, i64 C) {
    SC_ROW_SCRATCH(CL)
    const RowSeg seg = row_segment<N, CL>(C);
    const i64 r = seg.r, s0 = seg.s0, nslot = seg.nslot;
    if (r >= rows) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const T* gr = g + r * C + s0 * N;
    const T* lr = lp + r * C + s0 * N;
    T* orow = out + r * C + s0 * N;
    Pack<T, N> cg[K];
    load_cache<T, N, K, A>(gr, nslot, cg);
    double sg = 0.0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
#pragma unroll
            for (int e = 0; e < N; ++e) sg += to_d(cg[k].v[e]);
        }
    }
    const int ns = stage_count<T, N>();  // the gradient's tail staged
    if (CL == 1)  // a split row is all in registers
        tail_loop<T, Pack<T, N>>(
            tid + (i64)K * nt, nslot, nt, tid, [&](i64 v, int) { return ld<T, N, A>(gr, v); },
            [&](i64, int j, const Pack<T, N>& a) {
                if (j < ns) stage_slots<T, N>()[j] = a;
#pragma unroll
                for (int e = 0; e < N; ++e) sg += to_d(a.v[e]);
            });
    sg = row_sum(sg, sm);
    if (CL > 1) sg = cluster_fold<CL>(sg, OpAdd(), sm + 64);
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
            Pack<T, N> b = ld<T, N, A>(lr, v), o;
#pragma unroll
            for (int e = 0; e < N; ++e) o.v[e] = from_d<T>(to_d(cg[k].v[e]) - exp_in(b.v[e]) * sg);
            st<T, N, A>(orow, v, o);
        }
    }
    if (CL > 1) return;
    tail_loop<T, Pack2<T, N>>(
        tid + (i64)K * nt, nslot, nt, tid,
        [&](i64 v, int j) {
            return Pack2<T, N>{tail_ld<T, N, A>(gr, v, j, ns), ld<T, N, A>(lr, v)};
        },
        [&](i64 v, int, const Pack2<T, N>& q) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e)
                o.v[e] = from_d<T>(to_d(q.a.v[e]) - exp_in(q.b.v[e]) * sg);
            st<T, N, A>(orow, v, o);
        });
}

// ---------------------------------------------------------------------------
// Jacobians: out[r, i, j] = s_i (d_ij - s_j)  (LOG = 0)  or  d_ij - s_j  (LOG = 1)
// sh holds each row's Shift (m, ls) as two doubles (from lse_impl). blockDim.x threads
// cover j; blockDim.y * gridDim.y stride over the flattened (r, i) index q.

template <typename T, int LOG>
__device__ void jacobian_impl(const T* x, const double* sh, T* out, i64 rows, i64 C) {
    const i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= C) return;
    const i64 q0 = (i64)blockIdx.y * blockDim.y + threadIdx.y;
    const i64 step = (i64)gridDim.y * blockDim.y;
    const i64 nq = rows * C;
    if (q0 >= nq) return;
    const i64 dr = step / C, di = step - dr * C;
    i64 r = q0 / C, i = q0 - r * C, r_l = -1;
    Shift l;
    for (i64 q = q0; q < nq; q += step) {
        if (r != r_l) {  // a thread meets each row C / step times in a row
            l = shift_of(sh[2 * r], sh[2 * r + 1]);
            r_l = r;
        }
        const T* xr = x + r * C;
        const T sj = exp_shift(xr[j], l);
        const double d = (i == j) ? 1.0 : 0.0;
        double o;
        if (LOG) {
            o = d - to_d(sj);
        } else {
            o = to_d(exp_shift(xr[i], l)) * (d - to_d(sj));
        }
        out[q * C + j] = from_d<T>(o);
        r += dr;
        i += di;
        if (i >= C) { i -= C; r += 1; }
    }
}

// Jacobians of rows up to SC_JAC_ROWS classes: a block takes R = SC_JAC_ROWS / C rows
// at a time, writes their probabilities p = exp((x - m) - ls) in double to shared
// memory (one exp per row element, not two per output), then the rows' C x C outputs,
// each one product of two of them rounded once: the kernel above converts three
// values and takes two float exps per output. From 32 classes a thread takes a column
// of outputs; narrower rows are written in memory order. Wider rows take the kernel
// above.
#define SC_JAC_ROWS 1024

template <typename T, int LOG>
__device__ void jacobian_rows_impl(const T* x, const double* sh, T* out, i64 rows, i64 C) {
    __shared__ double sp[SC_JAC_ROWS];
    const int tid = threadIdx.x, nt = blockDim.x;
    const int c = (int)C, R = SC_JAC_ROWS / c;
    // an output q = t c + j of a group, t = rr c + i: stepped by nt = dt c + dj
    const int dj = nt % c, dt = nt / c, dti = dt % c;
    for (i64 r0 = (i64)blockIdx.x * R; r0 < rows; r0 += (i64)gridDim.x * R) {
        const int nr = (int)(rows - r0 < R ? rows - r0 : R);
        __syncthreads();  // the previous group's outputs have read sp
        for (int k = tid; k < nr * c; k += nt) {
            const i64 r = r0 + k / c;
            sp[k] = exp_shift_d(to_d(x[r0 * C + k]), sh[2 * r], sh[2 * r + 1]);
        }
        __syncthreads();
        if (c >= 32) {
            // a thread per column (rr, j) of the group, down its c outputs: p_j in a
            // register, p_i read by the whole warp at once, stores coalesced over j
            for (int k = tid; k < nr * c; k += nt) {
                const int rr = k / c, j = k - rr * c;
                const double pj = sp[k];
                const double* pr = sp + rr * c;
                T* o = out + (r0 + rr) * C * C + j;
                for (int i = 0; i < c; ++i, o += c) {
                    const double pi = pr[i];
                    *o = from_d<T>(LOG ? (i == j) - pj : pi * ((i == j) - pj));
                }
            }
            continue;
        }
        const int total = nr * c * c;  // at most SC_JAC_ROWS * c
        T* o = out + r0 * C * C + tid;
        const T* const end = out + r0 * C * C + total;
        int t = tid / c, j = tid % c, i = t % c;
        for (; o < end; o += nt) {
            const double pj = sp[t - i + j];
            const double d = (i == j) ? 1.0 : 0.0;
            *o = from_d<T>(LOG ? d - pj : sp[t] * (d - pj));
            j += dj;
            t += dt;
            i += dti;
            if (j >= c) {
                j -= c;
                t += 1;
                i += 1;
            }
            if (i >= c) i -= c;
        }
    }
}

// ---------------------------------------------------------------------------
// Cross-entropy with class-index targets (GRAD = 0: loss only; 1: loss and gradient)
//   loss[r] = alpha (lse - x_y) + beta sum_c w_c (lse - x_c),  lse - x = -shifted(x)
//   grad[r, j] = scale (p_j (alpha + beta W) - alpha [j == y] - beta w_j)
// Rows with alpha == beta == 0 get loss 0 and a zero gradient. The formula is taken
// literally otherwise (0 * inf is NaN, as in PyTorch); the smoothing sum is skipped
// in rows with beta == 0.

// Where a row's target, alpha and beta, the class weights and the gradient's scale
// come from. CeArrays: the core's per-row arrays and a host scale (the kernel
// contract's cross_entropy_rows and cross_entropy_grad_rows). CeTargets: the caller's
// targets, unchecked, with the statistics sc_ce_target_stats left in device memory
// (the optional cross_entropy_index_rows; see "Class-index targets on the device").
struct CeRow {
    i64 y;
    double a, b;
    bool kept;
};

struct CeArrays {
    const i64* target;
    const double *alpha, *beta, *cw;
    double scale;
    static constexpr bool nan_scale = false;  // the core writes NaN rows itself
    __device__ __forceinline__ bool halted() const { return false; }
    __device__ __forceinline__ double grad_scale() const { return scale; }
    __device__ __forceinline__ CeRow row(i64 r) const {
        return CeRow{target[r], alpha[r], beta[r], true};
    }
    __device__ __forceinline__ double w(i64 j) const { return cw[j]; }
};

struct CeTargets {
    const i64* target;
    const double* cw;  // class c's weight at cw[c * wstride]: stride 0 at stats[4] = 1
    const double* stats;
    i64 ignore, wstride;
    double keep, spread;  // 1 - eps and eps / C, as the core's plan forms them
    // a NaN scale (a mean over kept rows whose weights sum to 0) makes every kept
    // row's gradient NaN, as PyTorch's 0/0; the mean of the loss is NaN then anyway
    static constexpr bool nan_scale = true;
    // a bad target (stats[0] >= 0): the core raises, and no kernel writes anything
    __device__ __forceinline__ bool halted() const { return stats[0] >= 0.0; }
    __device__ __forceinline__ double grad_scale() const { return stats[3]; }
    __device__ __forceinline__ CeRow row(i64 r) const {
        const i64 t = target[r];
        if (t == ignore) return CeRow{0, 0.0, 0.0, false};
        return CeRow{t, keep * cw[t * wstride], spread, true};
    }
    // no branch on the weights' presence: with one the compiler unswitches every loop
    // that reads them, two copies of the row kernel's body
    __device__ __forceinline__ double w(i64 j) const { return cw[j * wstride]; }
};

// One gradient element, scale (p_j coef - alpha [j == y] - beta w_j): literally, with
// h the row's log-sum-exp, or on the fast path (see ce_impl) as exp_shift with h the
// shift that makes it scale coef p_j, less scale alpha at j == y.
template <typename T>
__device__ __forceinline__ T ce_grad_term(T xv, i64 j, i64 y, const Shift& h, bool fast,
                                          double scale, double coef, double a, double b,
                                          double wj) {
    const T e = exp_shift(xv, h);
    if (fast) return j == y ? from_d<T>(to_d(e) - scale * a) : e;
    return from_d<T>(scale * (to_d(e) * coef - (j == y ? a : 0.0) - b * wj));
}

// A row of N-element slots set to v.
template <typename T, int N, bool A>
__device__ __forceinline__ void fill_row(T* row, i64 nslot, T v) {
    Pack<T, N> z;
#pragma unroll
    for (int e = 0; e < N; ++e) z.v[e] = v;
    for (i64 s = threadIdx.x; s < nslot; s += blockDim.x) st<T, N, A>(row, s, z);
}

// CL > 1: the row split over the CL blocks of a cluster ("Split rows"), each block its
// segment of s0 + [0, nslot) slots: the statistics, the weights' sum and the smoothing
// sum folded over the cluster, the loss written by the first block. Every early return
// and fold depends on the row alone, so a cluster's blocks take them together.
template <typename T, int N, int K, bool A, int GRAD, typename P, int CL = 1>
__device__ void ce_impl(const T* x, const P plan, double* loss, T* grad, i64 rows, i64 C) {
    SC_ROW_SCRATCH(CL)
    const RowSeg seg = row_segment<N, CL>(C);
    const i64 r = seg.r, s0 = seg.s0, nslot = seg.nslot;
    if (r >= rows || plan.halted()) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const bool lead = tid == 0 && (CL == 1 || s0 == 0);  // writes the row's loss
    const T* xr = x + r * C;
    T* grow = GRAD ? grad + r * C + s0 * N : (T*)0;
    const CeRow rw = plan.row(r);
    const double a = rw.a, b = rw.b, scale = plan.grad_scale();
    if (P::nan_scale && GRAD && rw.kept && scale != scale) {
        fill_row<T, N, A>(grow, nslot, (T)sc_nan());
        if (lead) loss[r] = sc_nan();
        return;
    }
    if (a == 0.0 && b == 0.0) {  // uniform over the row's threads
        if (GRAD) fill_row<T, N, A>(grow, nslot, (T)0);
        if (lead) loss[r] = 0.0;
        return;
    }
    const i64 y = rw.y;
    // read before any thread writes the row (a split row: before the first cluster
    // barrier, after which another block may write the target's segment)
    const double xy = to_d(xr[y]);
    // unsmoothed gradient rows (a uniform choice per row) keep exp(x - mc) in the
    // cache: each element is then e_j f with f = scale a exp(mc - lse), the target's
    // less scale a
    const double ga = scale * a;
    const bool keep = GRAD && b == 0.0 && ga > 0.0 && ga < sc_inf();
    Pack<T, N> c[K];
    double m, s, mc, se;
    stats_row<T, N, K, A, CL>(xr + s0 * N, nslot, c, m, s, sm, keep, &mc, true, &se, C);
    // kept rows held in registers need the log-sum-exp for the loss alone (thread 0)
    const bool lean = keep && (CL > 1 || nslot <= (i64)K * nt);
    Shift lse;
    if (!lean || tid == 0) lse = make_shift(m, s, se);
    double wsum = 0.0;
    if (GRAD && b != 0.0) {
        if (CL > 1) {  // the segment's weights, then the cluster's
            for (i64 j = s0 * N + tid; j < (s0 + nslot) * N; j += nt) wsum += plan.w(j);
            wsum = cluster_fold<CL>(row_sum(wsum, sm), OpAdd(), sm + 64);
        } else {
            for (i64 j = tid; j < C; j += nt) wsum += plan.w(j);
            wsum = row_sum(wsum, sm);
        }
    }
    const double coef = a + b * wsum;
    // float kept rows past the register cache: each uncached gradient element is
    // scale a p_j (coef = a without smoothing; less scale a at the target), and
    // scale a p_j = exp(x_j - lse + log(scale a)) is one exp_shift with that shift,
    // straight to float
    const bool fast = keep && sizeof(T) == 4;
    const Shift hg = fast && !lean ? shift_of(lse.m, lse.ls - log(ga)) : lse;
    double ls = 0.0;  // sum_c w_c (lse - x_c), only with smoothing
    if (GRAD || b != 0.0) {
        Kept f;
        if (keep) f = lean ? kept_cached(s, ga) : kept_factor(mc, lse.m, lse.ls, ga);
#pragma unroll
        for (int k = 0; k < K; ++k) {
            i64 v = tid + (i64)k * nt;
            const i64 vr = s0 + v;  // the slot in the row
            if (keep && v < nslot) {
                Pack<T, N> o = scale_slot<N>(c[k], f);
                if (vr == y / N) {  // the target's slot: less scale a there
#pragma unroll
                    for (int e = 0; e < N; ++e)
                        if (vr * N + e == y) o.v[e] = from_d<T>(to_d(c[k].v[e]) * f.d - ga);
                }
                st<T, N, A>(grow, v, o);
            } else if (v < nslot) {
                Pack<T, N> o;
#pragma unroll
                for (int e = 0; e < N; ++e) {
                    const i64 jj = vr * N + e;
                    const T xv = c[k].v[e];
                    double wj = 0.0;
                    if (b != 0.0) {
                        wj = plan.w(jj);
                        ls += wj * -shifted(to_d(xv), lse);
                    }
                    if (GRAD) o.v[e] = ce_grad_term(xv, jj, y, hg, fast, scale, coef, a, b, wj);
                }
                if (GRAD) st<T, N, A>(grow, v, o);
            }
        }
        if (CL == 1) {  // a split row is all in registers
            const int ns = stage_count<T, N>();
            tail_loop<T, Pack<T, N>>(
                tid + (i64)K * nt, nslot, nt, tid,
                [&](i64 v, int j) { return tail_ld<T, N, A>(xr, v, j, ns); },
                [&](i64 v, int, const Pack<T, N>& p) {
                    Pack<T, N> o;
#pragma unroll
                    for (int e = 0; e < N; ++e) {
                        const i64 jj = v * N + e;
                        const T xv = p.v[e];
                        double wj = 0.0;
                        if (b != 0.0) {
                            wj = plan.w(jj);
                            ls += wj * -shifted(to_d(xv), lse);
                        }
                        if (GRAD)
                            o.v[e] = ce_grad_term(xv, jj, y, hg, fast, scale, coef, a, b, wj);
                    }
                    if (GRAD) st<T, N, A>(grow, v, o);
                });
        }
    }
    if (b != 0.0) {
        ls = row_sum(ls, sm);
        if (CL > 1) ls = cluster_fold<CL>(ls, OpAdd(), sm + 64);
    }
    if (lead) {
        double l = a * -shifted(xy, lse);
        if (b != 0.0) l += b * ls;
        loss[r] = l;
    }
}

// ---------------------------------------------------------------------------
// Class-index targets on the device (the optional cross_entropy_index_rows of
// backends/README.md). What the core's plan finds on the host before a launch, here
// left in device memory for the row kernel (CeTargets) to read, so that the host
// waits for the device once, after every launch of the call:
//   stats[0]  the first row whose target is neither in [0, C) nor ignore, or -1
//   stats[1]  the kept rows' summed class weight (their count without weights)
//   stats[2]  the number of kept rows
//   stats[3]  the gradient's scale: 1 / stats[1] for a mean, NaN where that is 1 / 0
//             with rows kept (PyTorch's 0/0), 0 with none kept; 1 for a sum
//   stats[4]  1: every class's weight where there are none (CeTargets, stride 0)
// sc_ce_target_stats gives each block of SC_STATS_THREADS threads `per` rows. One block
// writes stats; more write (first bad or -1, weight, count) to part[3 b ..], which
// sc_ce_target_finish combines. Every sum is formed in an order fixed by the number
// of rows (per-thread sums over a stride, then a tree over the block): no atomics.

#define SC_STATS_THREADS 256
#define SC_NO_BAD 0x7fffffffffffffffLL

// The block's fold of every thread's v with op (a tree over the SC_STATS_THREADS
// threads, the same for every call of that many): every thread gets the result.
struct OpMin {
    template <typename V>
    __device__ __forceinline__ V operator()(V a, V b) const { return b < a ? b : a; }
};

template <typename V, typename Op>
__device__ __forceinline__ V block_fold(V v, Op op) {
    __shared__ V sv[SC_STATS_THREADS];
    const int tid = threadIdx.x;
    __syncthreads();  // a previous fold of this type has finished reading sv
    sv[tid] = v;
    __syncthreads();
    for (int o = SC_STATS_THREADS / 2; o > 0; o >>= 1) {
        if (tid < o) sv[tid] = op(sv[tid], sv[tid + o]);
        __syncthreads();
    }
    return sv[0];
}

// Block b's run of `per` of the `rows` rows, [lo, hi).
__device__ __forceinline__ void block_rows(i64 rows, i64 per, i64& lo, i64& hi) {
    lo = (i64)blockIdx.x * per;
    hi = lo + per < rows ? lo + per : rows;
}

// The block's (first bad row, weight, count); every thread gets them.
__device__ __forceinline__ void stats_block(i64& bad, double& w, i64& kept) {
    bad = block_fold(bad, OpMin());
    w = block_fold(w, OpAdd());
    kept = block_fold(kept, OpAdd());
}

// A part's or the statistics' first bad row: -1 for none.
__device__ __forceinline__ double bad_row(i64 bad) { return bad == SC_NO_BAD ? -1.0 : (double)bad; }

__device__ __forceinline__ void stats_write(i64 bad, double w, i64 kept, i64 mean,
                                            double* stats) {
    stats[0] = bad_row(bad);
    stats[1] = w;
    stats[2] = (double)kept;
    stats[3] = !mean ? 1.0 : w != 0.0 ? 1.0 / w : kept ? sc_nan() : 0.0;
    stats[4] = 1.0;
}

extern "C" __global__ void __launch_bounds__(SC_STATS_THREADS)
    sc_ce_target_stats(const i64* t, const double* cw, i64 weighted, i64 rows, i64 C,
                       i64 ignore, i64 per, i64 mean, double* out) {
    i64 lo, hi, bad = SC_NO_BAD, kept = 0;
    block_rows(rows, per, lo, hi);
    double w = 0.0;
    for (i64 r = lo + threadIdx.x; r < hi; r += SC_STATS_THREADS) {
        const i64 v = t[r];
        if (v == ignore) continue;
        if (v < 0 || v >= C) {  // this thread's first: its rows only increase
            bad = r;
            break;
        }
        ++kept;
        w += weighted ? cw[v] : 1.0;
    }
    stats_block(bad, w, kept);
    if (threadIdx.x != 0) return;
    if (gridDim.x == 1) {
        stats_write(bad, w, kept, mean, out);
    } else {
        double* p = out + 3 * (i64)blockIdx.x;
        p[0] = bad_row(bad);
        p[1] = w;
        p[2] = (double)kept;
    }
}

extern "C" __global__ void __launch_bounds__(SC_STATS_THREADS)
    sc_ce_target_finish(const double* part, i64 nparts, i64 mean, double* stats) {
    i64 bad = SC_NO_BAD, kept = 0;
    double w = 0.0;
    for (i64 b = threadIdx.x; b < nparts; b += SC_STATS_THREADS) {
        const double* p = part + 3 * b;
        if (p[0] >= 0.0 && (i64)p[0] < bad) bad = (i64)p[0];
        w += p[1];
        kept += (i64)p[2];
    }
    stats_block(bad, w, kept);
    if (threadIdx.x == 0) stats_write(bad, w, kept, mean, stats);
}

// The call's loss: the row losses summed (no CuPy reduction, whose launch costs more
// host time than a raw kernel's), divided by the kept weight for a mean (NaN where that
// is 0, as PyTorch's mean over no target), in the result's type. Up to `per` rows (the
// statistics' 16384) one block of sc_ce_total sums them; past that sc_ce_loss_parts
// sums `per` rows a block first. Per-thread sums over a stride, then a tree: an order
// fixed by the number of rows.
__device__ __forceinline__ double strided_sum(const double* v, i64 lo, i64 hi) {
    double s = 0.0;
    for (i64 i = lo + threadIdx.x; i < hi; i += SC_STATS_THREADS) s += v[i];
    return block_fold(s, OpAdd());
}

extern "C" __global__ void __launch_bounds__(SC_STATS_THREADS)
    sc_ce_loss_parts(const double* loss, i64 rows, i64 per, double* part) {
    i64 lo, hi;
    block_rows(rows, per, lo, hi);
    const double s = strided_sum(loss, lo, hi);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

template <typename T>
__device__ __forceinline__ void ce_total(const double* v, i64 n, const double* stats, i64 mean,
                                         T* out) {
    if (stats[0] >= 0.0) return;  // a bad target: nothing is written
    double s = strided_sum(v, 0, n);
    if (threadIdx.x != 0) return;
    if (mean) s = stats[1] != 0.0 ? s / stats[1] : s * sc_nan();
    out[0] = from_d<T>(s);
}
extern "C" __global__ void __launch_bounds__(SC_STATS_THREADS)
    sc_ce_total_f32(const double* v, i64 n, const double* stats, i64 mean, float* out) {
    ce_total<float>(v, n, stats, mean, out);
}
extern "C" __global__ void __launch_bounds__(SC_STATS_THREADS)
    sc_ce_total_f64(const double* v, i64 n, const double* stats, i64 mean, double* out) {
    ce_total<double>(v, n, stats, mean, out);
}

// ---------------------------------------------------------------------------
// Cross-entropy with probability targets
//   a_c = ((1 - eps) t_c + eps / C) w_c
//   loss[r] = sum_c a_c (lse - x_c)       (terms with a_c == 0 contribute 0, even
//                                          where x_c = -inf or the row is NaN)
//   grad[r, j] = scale (p_j sum_c a_c - a_j)

template <typename T, int N, int K, bool A, int GRAD>
__device__ void ce_prob_impl(const T* x, const T* t, double eps, const double* cw, double scale,
                             double* loss, T* grad, i64 rows, i64 C) {
    __shared__ double sm[64];
    const i64 r = row_index();
    if (r >= rows) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    const i64 nslot = C / N;
    const T* xr = x + r * C;
    const T* tr = t + r * C;
    T* grow = GRAD ? grad + r * C : (T*)0;
    const double keep = 1.0 - eps, spread = eps / (double)C;
    Pack<T, N> c[K], ct[K];
    double m, s, se;
    load_cache<T, N, K, A>(tr, nslot, ct);
    stats_row<T, N, K, A>(xr, nslot, c, m, s, sm, false, nullptr, true, &se, C);
    const Shift lse = make_shift(m, s, se);
    double asum = 0.0;
    if (GRAD) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            i64 v = tid + (i64)k * nt;
            if (v < nslot) {
#pragma unroll
                for (int e = 0; e < N; ++e)
                    asum += (keep * to_d(ct[k].v[e]) + spread) * cw[v * N + e];
            }
        }
        tail_loop<T, Pack<T, N>>(
            tid + (i64)K * nt, nslot, nt, tid, [&](i64 v, int) { return ld<T, N, A>(tr, v); },
            [&](i64 v, int, const Pack<T, N>& q) {
#pragma unroll
                for (int e = 0; e < N; ++e)
                    asum += (keep * to_d(q.v[e]) + spread) * cw[v * N + e];
            });
        asum = row_sum(asum, sm);
    }
    double ls = 0.0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        i64 v = tid + (i64)k * nt;
        if (v < nslot) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e) {
                const double aj = (keep * to_d(ct[k].v[e]) + spread) * cw[v * N + e];
                if (aj != 0.0) ls += aj * -shifted(to_d(c[k].v[e]), lse);
                if (GRAD) o.v[e] = from_d<T>(scale * (to_d(exp_shift(c[k].v[e], lse)) * asum - aj));
            }
            if (GRAD) st<T, N, A>(grow, v, o);
        }
    }
    const int ns = stage_count<T, N>();
    tail_loop<T, Pack2<T, N>>(
        tid + (i64)K * nt, nslot, nt, tid,
        [&](i64 v, int j) {
            return Pack2<T, N>{tail_ld<T, N, A>(xr, v, j, ns), ld<T, N, A>(tr, v)};
        },
        [&](i64 v, int, const Pack2<T, N>& pq) {
            Pack<T, N> o;
#pragma unroll
            for (int e = 0; e < N; ++e) {
                const double aj = (keep * to_d(pq.b.v[e]) + spread) * cw[v * N + e];
                if (aj != 0.0) ls += aj * -shifted(to_d(pq.a.v[e]), lse);
                if (GRAD)
                    o.v[e] = from_d<T>(scale * (to_d(exp_shift(pq.a.v[e], lse)) * asum - aj));
            }
            if (GRAD) st<T, N, A>(grow, v, o);
        });
    ls = row_sum(ls, sm);
    // a NaN row's terms are NaN where a_c != 0; a row whose a_c are all 0 loses 0
    if (tid == 0) loss[r] = ls;
}

// ---------------------------------------------------------------------------
// Entry points: every template instance the Python side launches, by plain C name
// sc_<op>_<dtype>_v<VEC>. K (cached slots per thread) keeps 16 floats or 8 doubles
// of a row in registers per thread.

// Most threads a row kernel is launched with: every register budget must fit it.
// Kernels that keep one operand in registers take up to 1024 threads per block,
// those that keep two (a gradient and the probabilities, logits and targets) 512.
#define SC_BOUNDS_1 __launch_bounds__(1024, 1)
#define SC_BOUNDS_2 __launch_bounds__(512)

#define SC_ROW_KERNELS(T, SFX, N, K, A)                                                         \
    extern "C" __global__ void SC_BOUNDS_1 sc_softmax_##SFX(const T* x, T* out, i64 rows, i64 C) {     \
        softmax_impl<T, N, K, A, 0>(x, out, rows, C);                                          \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_log_softmax_##SFX(const T* x, T* out, i64 rows, i64 C) { \
        softmax_impl<T, N, K, A, 1>(x, out, rows, C);                                          \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_logsumexp_##SFX(const T* x, T* out, i64 rows, i64 C) {   \
        lse_impl<T, N, K, A, 0, T>(x, out, rows, C);                                              \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_logsumexp_weighted_##SFX(                    \
        const T* x, const T* b, i64 bstride, T* out, T* sign, i64 rows, i64 C) {            \
        lse_weighted_impl<T, N, A>(x, b, bstride, out, sign, rows, C);                      \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_row_shift_##SFX(const T* x, double* out, i64 rows,      \
                                                  i64 C) {                                  \
        lse_impl<T, N, K, A, 1, double>(x, out, rows, C);                                         \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_2 sc_softmax_backward_##SFX(const T* g, const T* p, T* out,   \
                                                         i64 rows, i64 C) {                 \
        softmax_backward_impl<T, N, K, A>(g, p, out, rows, C);                                 \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_2 sc_log_softmax_backward_##SFX(const T* g, const T* lp,      \
                                                             T* out, i64 rows, i64 C) {     \
        log_softmax_backward_impl<T, N, K, A>(g, lp, out, rows, C);                            \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_ce_##SFX(const T* x, const i64* target,                  \
                                          const double* alpha, const double* beta,          \
                                          const double* cw, double* loss, i64 rows,         \
                                          i64 C) {                                          \
        ce_impl<T, N, K, A, 0>(x, CeArrays{target, alpha, beta, cw, 1.0}, loss, (T*)0, rows, C); \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_ce_grad_##SFX(const T* x, const i64* target,             \
                                               const double* alpha, const double* beta,     \
                                               const double* cw, double scale,              \
                                               double* loss, T* grad, i64 rows, i64 C) {    \
        ce_impl<T, N, K, A, 1>(x, CeArrays{target, alpha, beta, cw, scale}, loss, grad, rows, C); \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_ce_idx_##SFX(                                  \
        const T* x, const i64* target, const double* cw, i64 wstride, const double* stats,  \
        i64 ignore, double keep, double spread, double* loss, i64 rows, i64 C) {           \
        const CeTargets p{target, cw, stats, ignore, wstride, keep, spread};                \
        ce_impl<T, N, K, A, 0>(x, p, loss, (T*)0, rows, C);                                 \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_1 sc_ce_idx_grad_##SFX(                             \
        const T* x, const i64* target, const double* cw, i64 wstride, const double* stats,  \
        i64 ignore, double keep, double spread, double* loss, T* grad, i64 rows, i64 C) {  \
        const CeTargets p{target, cw, stats, ignore, wstride, keep, spread};                \
        ce_impl<T, N, K, A, 1>(x, p, loss, grad, rows, C);                                  \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_2 sc_ce_prob_##SFX(const T* x, const T* t, double eps,        \
                                               const double* cw, double* loss, i64 rows,    \
                                               i64 C) {                                     \
        ce_prob_impl<T, N, K, A, 0>(x, t, eps, cw, 1.0, loss, (T*)0, rows, C);                 \
    }                                                                                       \
    extern "C" __global__ void SC_BOUNDS_2 sc_ce_prob_grad_##SFX(const T* x, const T* t, double eps,   \
                                                    const double* cw, double scale,         \
                                                    double* loss, T* grad, i64 rows,        \
                                                    i64 C) {                                \
        ce_prob_impl<T, N, K, A, 1>(x, t, eps, cw, scale, loss, grad, rows, C);                \
    }

SC_ROW_KERNELS(float, f32_v1, 1, 16, true)
SC_ROW_KERNELS(float, f32_v4, 4, 4, true)
SC_ROW_KERNELS(float, f32_v4u, 4, 4, false)
SC_ROW_KERNELS(double, f64_v1, 1, 8, true)
SC_ROW_KERNELS(double, f64_v2, 2, 4, true)
SC_ROW_KERNELS(double, f64_v2u, 2, 4, false)

// The split-row entry points: sc_split_<op>_<dtype>_v<VEC>_c<CL> (aligned rows only).
#if SC_SPLIT
#define SC_SPLIT_ONLY(...) __VA_ARGS__
#else
#define SC_SPLIT_ONLY(...) __trap();
#endif
#define SC_SPLIT_KERNELS(T, SFX, N, K, CL)                                               \
    extern "C" __global__ void SC_BOUNDS_2 SC_CLUSTER_DIMS(CL)                           \
        sc_split_softmax_backward_##SFX##_c##CL(const T* g, const T* p, T* out, i64 rows, \
                                                i64 C) {                                 \
        SC_SPLIT_ONLY(softmax_backward_impl<T, N, K, true, CL>(g, p, out, rows, C);)     \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_2 SC_CLUSTER_DIMS(CL)                           \
        sc_split_log_softmax_backward_##SFX##_c##CL(const T* g, const T* lp, T* out,     \
                                                    i64 rows, i64 C) {                   \
        SC_SPLIT_ONLY(log_softmax_backward_impl<T, N, K, true, CL>(g, lp, out, rows, C);) \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_1 SC_CLUSTER_DIMS(CL)                           \
        sc_split_softmax_##SFX##_c##CL(const T* x, T* out, i64 rows, i64 C) {           \
        SC_SPLIT_ONLY(softmax_impl<T, N, K, true, 0, CL>(x, out, rows, C);)              \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_1 SC_CLUSTER_DIMS(CL)                           \
        sc_split_log_softmax_##SFX##_c##CL(const T* x, T* out, i64 rows, i64 C) {       \
        SC_SPLIT_ONLY(softmax_impl<T, N, K, true, 1, CL>(x, out, rows, C);)              \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_1 SC_CLUSTER_DIMS(CL)                           \
        sc_split_logsumexp_##SFX##_c##CL(const T* x, T* out, i64 rows, i64 C) {         \
        SC_SPLIT_ONLY(lse_impl<T, N, K, true, 0, T, CL>(x, out, rows, C);)               \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_1 SC_CLUSTER_DIMS(CL) sc_split_ce_grad_##SFX##_c##CL( \
        const T* x, const i64* target, const double* alpha, const double* beta,          \
        const double* cw, double scale, double* loss, T* grad, i64 rows, i64 C) {        \
        SC_SPLIT_ONLY(ce_impl<T, N, K, true, 1, CeArrays, CL>(                           \
            x, CeArrays{target, alpha, beta, cw, scale}, loss, grad, rows, C);)          \
    }                                                                                    \
    extern "C" __global__ void SC_BOUNDS_1 SC_CLUSTER_DIMS(CL)                           \
        sc_split_ce_idx_grad_##SFX##_c##CL(                                              \
            const T* x, const i64* target, const double* cw, i64 wstride,                \
            const double* stats, i64 ignore, double keep, double spread, double* loss,   \
            T* grad, i64 rows, i64 C) {                                                  \
        SC_SPLIT_ONLY(ce_impl<T, N, K, true, 1, CeTargets, CL>(                          \
            x, CeTargets{target, cw, stats, ignore, wstride, keep, spread}, loss, grad,  \
            rows, C);)                                                                   \
    }

SC_SPLIT_KERNELS(float, f32_v4, 4, 4, 2)
SC_SPLIT_KERNELS(float, f32_v4, 4, 4, 4)
SC_SPLIT_KERNELS(float, f32_v4, 4, 4, 8)
SC_SPLIT_KERNELS(double, f64_v2, 2, 4, 2)
SC_SPLIT_KERNELS(double, f64_v2, 2, 4, 4)
SC_SPLIT_KERNELS(double, f64_v2, 2, 4, 8)

// The Jacobians' entry points: sc_<op>[_rows]_<dtype> (the shared-memory kernel, and
// the one for wider rows), LOG = 0 for softmax, 1 for log_softmax.
#define SC_JAC_KERNEL(NAME, IMPL, T, LOG)                                                \
    extern "C" __global__ void NAME(const T* x, const double* sh, T* out, i64 rows,      \
                                    i64 C) {                                             \
        IMPL<T, LOG>(x, sh, out, rows, C);                                               \
    }
#define SC_JAC_KERNELS(T, SFX)                                                           \
    SC_JAC_KERNEL(sc_softmax_jacobian_rows_##SFX, jacobian_rows_impl, T, 0)              \
    SC_JAC_KERNEL(sc_log_softmax_jacobian_rows_##SFX, jacobian_rows_impl, T, 1)          \
    SC_JAC_KERNEL(sc_softmax_jacobian_##SFX, jacobian_impl, T, 0)                        \
    SC_JAC_KERNEL(sc_log_softmax_jacobian_##SFX, jacobian_impl, T, 1)

SC_JAC_KERNELS(float, f32)
SC_JAC_KERNELS(double, f64)
