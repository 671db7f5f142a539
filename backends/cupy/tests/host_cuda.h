// Run the CUDA kernels of kernels.cu on the host, for tests on machines without a GPU.
//
// One std::thread per CUDA thread, blocks one after another: __syncthreads is a
// barrier over the block, warp shuffles exchange through a per-warp buffer between
// two barriers over the lanes their mask names (which must all take part). Slow, but
// it executes the kernels' real control flow (row-group, warp and block reductions,
// register caches, vector slots, early exits).
#pragma once

#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

// The longest a block may run before the emulation takes it for a deadlock.
#ifndef EMU_BLOCK_SECONDS
#define EMU_BLOCK_SECONDS 120
#endif

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __launch_bounds__(...)

using std::exp;
using std::log;

inline double __longlong_as_double(long long v) {
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
}
inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, sizeof f);
    return f;
}
inline int __float_as_int(float f) {
    int v;
    std::memcpy(&v, &f, sizeof v);
    return v;
}

// A warp's shuffle buffer, and one barrier per group of lanes a shuffle may name: the
// whole warp, either half, or any aligned quarter (the row groups of kernels.cu),
// at bars[32 / width + base / width], numbered as in a binary heap.
struct WarpState {
    std::unique_ptr<std::barrier<>> bars[8];
    double buf[32];
    WarpState() {
        for (int i = 1; i < 8; ++i) bars[i] = std::make_unique<std::barrier<>>(i == 1 ? 32 : i < 4 ? 16 : 8);
    }
};

// The block state (barrier, warp buffers, __shared__ statics) is global, so one
// launch runs at a time, as kernels on one stream do; concurrent launches from
// several host threads (the kit's concurrent-calls property) wait their turn.
inline std::mutex g_launch;
inline std::unique_ptr<std::barrier<>> g_block_bar;
inline std::vector<std::unique_ptr<WarpState>> g_warps;

inline int emu_tid() { return threadIdx.x + threadIdx.y * blockDim.x; }

// The launch's dynamic shared memory (extern __shared__ on a GPU), 16-byte aligned. Its
// contents are undefined at a block's start on a GPU: here every block starts with all
// bytes 0xff (NaN in either float type), so a kernel that reads a staged slot it never
// stored gets NaN.
struct alignas(16) EmuChunk {
    unsigned char b[16];
};
inline std::vector<EmuChunk> g_dyn;
inline unsigned g_dyn_bytes = 0;

inline void* emu_dynamic_shared(unsigned& bytes) {
    bytes = g_dyn_bytes;
    return g_dyn.data();
}

inline void __syncthreads() { g_block_bar->arrive_and_wait(); }

// The barrier of the lanes in mask, which must be an aligned run of 8, 16 or 32 lanes
// holding the caller (a CUDA shuffle whose mask leaves out a lane it reads from, or
// the caller itself, is undefined): anything else aborts the test run.
inline std::barrier<>& emu_lanes(WarpState& w, unsigned mask, int lane) {
    const int width = __builtin_popcount(mask);
    const int base = mask ? __builtin_ctz(mask) : 0;
    const unsigned run = width == 32 ? 0xffffffffu : ((1u << width) - 1u) << base;
    if ((width != 8 && width != 16 && width != 32) || base % width || mask != run ||
        !((mask >> lane) & 1u)) {
        std::fprintf(stderr, "host_cuda.h: shuffle mask %08x from lane %d\n", mask, lane);
        std::abort();
    }
    return *w.bars[32 / width + base / width];
}

// Every lane in mask writes its value, then reads lane from_lane(lane)'s.
template <typename F>
double emu_exchange(unsigned mask, double v, F from_lane) {
    const int t = emu_tid(), lane = t & 31;
    WarpState& w = *g_warps[t >> 5];
    std::barrier<>& bar = emu_lanes(w, mask, lane);
    w.buf[lane] = v;
    bar.arrive_and_wait();
    const int from = from_lane(lane) & 31;
    if (!((mask >> from) & 1u)) {
        std::fprintf(stderr, "host_cuda.h: lane %d reads lane %d outside mask %08x\n", lane, from, mask);
        std::abort();
    }
    const double r = w.buf[from];
    bar.arrive_and_wait();
    return r;
}

inline double __shfl_xor_sync(unsigned mask, double v, int o) {
    return emu_exchange(mask, v, [o](int lane) { return lane ^ o; });
}

inline double __shfl_sync(unsigned mask, double v, int src) {
    return emu_exchange(mask, v, [src](int) { return src; });
}

// float values travel through the double buffer exactly (row_max of float rows)
inline float __shfl_xor_sync(unsigned mask, float v, int o) {
    return (float)__shfl_xor_sync(mask, (double)v, o);
}

template <typename... A, std::size_t... I>
void emu_call(void (*k)(A...), void** a, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(a[I])...);
}

template <typename... A>
void emu_launch(void (*k)(A...), dim3 g, dim3 b, void** args, unsigned shared_bytes = 0) {
    const std::lock_guard<std::mutex> one_at_a_time(g_launch);
    gridDim = g;
    blockDim = b;
    g_dyn_bytes = shared_bytes;
    g_dyn.resize((shared_bytes + 15) / 16);
    const unsigned n = b.x * b.y;
    for (unsigned by = 0; by < g.y; ++by) {
        for (unsigned bx = 0; bx < g.x; ++bx) {
            g_block_bar = std::make_unique<std::barrier<>>(n);
            if (!g_dyn.empty()) std::memset(g_dyn.data(), 0xff, g_dyn.size() * sizeof(EmuChunk));
            g_warps.clear();
            for (unsigned w = 0; w < (n + 31) / 32; ++w) g_warps.push_back(std::make_unique<WarpState>());
            std::vector<std::thread> threads;
            threads.reserve(n);
            std::mutex done_mu;
            std::condition_variable done_cv;
            unsigned done = 0;
            for (unsigned ty = 0; ty < b.y; ++ty) {
                for (unsigned tx = 0; tx < b.x; ++tx) {
                    threads.emplace_back([=, &done_mu, &done_cv, &done] {
                        threadIdx = dim3{tx, ty, 1};
                        blockIdx = dim3{bx, by, 1};
                        emu_call(k, args, std::index_sequence_for<A...>{});
                        const std::lock_guard<std::mutex> lk(done_mu);
                        if (++done == n) done_cv.notify_one();
                    });
                }
            }
            {
                // A block's threads that never finish wait at a barrier or a shuffle
                // some of them do not reach (on a GPU: undefined, often a hang):
                // abort with the block's place rather than hang the test run.
                std::unique_lock<std::mutex> lk(done_mu);
                if (!done_cv.wait_for(lk, std::chrono::seconds(EMU_BLOCK_SECONDS),
                                      [&] { return done == n; })) {
                    std::fprintf(stderr,
                                 "host_cuda.h: block (%u, %u) of %u threads: %u finished in "
                                 "%d s; the others wait at a barrier or shuffle that not "
                                 "all of them reach\n",
                                 bx, by, n, done, EMU_BLOCK_SECONDS);
                    std::abort();
                }
            }
            for (auto& t : threads) t.join();
        }
    }
}
