// Run the CUDA kernels of kernels.cu on the host, for tests on machines without a GPU.
//
// One fiber (a ucontext with its own stack) per CUDA thread, all on the launching
// host thread, blocks one after another: a fiber runs until it waits at __syncthreads
// or a warp shuffle, then the next one runs; a barrier releases its waiters when the
// last of them arrives. Shuffles exchange through a per-warp buffer between two
// barriers over the lanes their mask names (which must all take part). It executes
// the kernels' real control flow (row-group, warp and block reductions, register
// caches, vector slots, early exits), sequentially: it checks what the kernels
// compute, not how they race. A cluster launch (the split-row kernels) runs the
// blocks of a cluster together, each with its own barrier, warps and cta_scratch,
// and a cluster barrier over all of their fibers.
#pragma once

#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

// The longest a block may run before the emulation takes it for a kernel that never
// ends (a loop without a barrier; a barrier not all threads reach is found at once).
#ifndef EMU_BLOCK_SECONDS
#define EMU_BLOCK_SECONDS 120
#endif

// Each fiber's stack (the kernels keep their register caches there), and a guard page
// below it, so an overflow faults rather than writes over the next fiber's stack.
#ifndef EMU_STACK_BYTES
#define EMU_STACK_BYTES (128 * 1024)
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
#define __cluster_dims__(...)

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

// A barrier over some of a block's fibers: the last to arrive releases the others
// (they wait for its generation to change) and goes on.
struct EmuBarrier {
    unsigned expected = 0, count = 0, gen = 0;
};

// A warp's shuffle buffer, and one barrier per group of lanes a shuffle may name: the
// whole warp, either half, or any aligned quarter (the row groups of kernels.cu),
// at bars[32 / width + base / width], numbered as in a binary heap.
struct WarpState {
    EmuBarrier bars[8];
    double buf[32];
    WarpState() {
        for (int i = 1; i < 8; ++i) bars[i].expected = i == 1 ? 32 : i < 4 ? 16 : 8;
    }
};

struct EmuFiber {
    ucontext_t ctx;
    dim3 idx, blk;
    unsigned rank = 0;  // its block's rank in the cluster
    const unsigned* wait_gen = nullptr;  // the barrier generation it waits to change
    unsigned wait_val = 0;
    bool done = false;
};

// The launch state (barrier, warp buffers, fibers, __shared__ statics) is global, so
// one launch runs at a time, as kernels on one stream do; concurrent launches from
// several host threads (the kit's concurrent-calls property) wait their turn.
inline std::mutex g_launch;
inline std::vector<EmuBarrier> g_block_bars;  // one per block of the cluster
inline EmuBarrier g_cluster_bar;
inline unsigned g_cluster = 1;  // blocks run together: a cluster's
inline std::vector<std::unique_ptr<WarpState>> g_warps;  // the cluster's, block by block
inline std::vector<EmuFiber> g_fibers;
inline EmuFiber* g_cur = nullptr;
inline ucontext_t g_sched;
inline std::function<void()> g_body;
inline unsigned char* g_stacks = nullptr;
inline std::size_t g_stack_slots = 0, g_stack_slot_bytes = 0;

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

inline unsigned g_block_threads = 0, g_finished = 0;  // fibers of the cluster

// Each block's own small shared array (cta_scratch in kernels.cu: a __shared__ array
// on a GPU), which other blocks of its cluster read through cluster_ld.
inline constexpr unsigned EMU_CTA_DOUBLES = 72;
inline std::vector<std::vector<double>> g_cta;

// The order fibers take turns in: by thread index (g_reverse 0), the last thread first
// (1), or a cluster's blocks last to first, each block's threads first to last, the
// first fiber in that order that can run always taking the next turn (2; as 0 where a
// block runs alone). A kernel that reads shared memory or a shuffle buffer before the
// barrier that makes the value ready reads a stale value in one order or the other,
// so the tests run every kernel both ways; and a block of a cluster that overwrites
// what another block has yet to read shows in the third order, where the last block
// runs as far ahead of the others as their barriers let it.
inline int g_reverse = 0;

inline unsigned emu_turn(unsigned i) {
    if (g_reverse == 1) return g_block_threads - 1 - i;
    if (g_reverse == 2 && g_cluster > 1) {
        const unsigned n = g_block_threads / g_cluster;
        return (g_cluster - 1 - i / n) * n + i % n;
    }
    return i;
}

[[noreturn]] inline void emu_deadlock() {
    // on a GPU: undefined, often a hang
    if (g_cluster > 1)
        std::fprintf(stderr,
                     "host_cuda.h: the cluster of %u blocks from (%u, %u), %u threads "
                     "each: %u finished, the others wait at a barrier or shuffle that "
                     "not all of them reach\n",
                     g_cluster, blockIdx.x - blockIdx.x % g_cluster, blockIdx.y,
                     g_block_threads / g_cluster, g_finished);
    else
        std::fprintf(stderr,
                     "host_cuda.h: block (%u, %u) of %u threads: %u finished, the others "
                     "wait at a barrier or shuffle that not all of them reach\n",
                     blockIdx.x, blockIdx.y, g_block_threads, g_finished);
    std::abort();
}

// The turn after fiber f's: the next one in order, or in order 2 the first.
inline unsigned emu_next_turn(const EmuFiber* f) {
    if (g_reverse == 2) return 0;
    return emu_turn(static_cast<unsigned>(f - g_fibers.data())) + 1;
}

// The first fiber from turn t on (cyclically) that has not finished and is not waiting.
inline EmuFiber* emu_runnable(unsigned t) {
    for (unsigned k = 0; k < g_block_threads; ++k) {
        EmuFiber& f = g_fibers[emu_turn((t + k) % g_block_threads)];
        if (!f.done && !(f.wait_gen && *f.wait_gen == f.wait_val)) return &f;
    }
    return nullptr;
}

// Arrive at b; unless this is the last arrival, hand over to the next fiber that can
// run (none: a barrier that not all threads reach) until the last one comes.
inline void emu_wait(EmuBarrier& b) {
    const unsigned gen = b.gen;
    if (++b.count == b.expected) {
        b.count = 0;
        ++b.gen;
        return;
    }
    EmuFiber* me = g_cur;
    me->wait_gen = &b.gen;
    me->wait_val = gen;
    EmuFiber* next = emu_runnable(emu_next_turn(me));
    if (!next) emu_deadlock();
    g_cur = next;
    threadIdx = next->idx;
    blockIdx = next->blk;
    swapcontext(&me->ctx, &next->ctx);
    me->wait_gen = nullptr;  // released, and handed a turn
}

inline void __syncthreads() { emu_wait(g_block_bars[g_cur->rank]); }

// The cluster's side of kernels.cu's split rows: the block's rank, the barrier of all
// the cluster's threads, a block's scratch and another block's value at the same place.
inline unsigned emu_cluster_rank() { return g_cur->rank; }
inline void emu_cluster_sync() { emu_wait(g_cluster_bar); }
inline double* emu_cta_scratch() { return g_cta[g_cur->rank].data(); }
inline double emu_cluster_ld(const double* p, unsigned rank) {
    const double* own = emu_cta_scratch();
    if (rank >= g_cluster || p < own || p >= own + EMU_CTA_DOUBLES) {
        std::fprintf(stderr, "host_cuda.h: cluster_ld of rank %u (a cluster of %u) "
                     "outside the block's scratch\n", rank, g_cluster);
        std::abort();
    }
    return g_cta[rank][static_cast<std::size_t>(p - own)];
}

// The barrier of the lanes in mask, which must be an aligned run of 8, 16 or 32 lanes
// holding the caller (a CUDA shuffle whose mask leaves out a lane it reads from, or
// the caller itself, is undefined): anything else aborts the test run.
inline EmuBarrier& emu_lanes(WarpState& w, unsigned mask, int lane) {
    const int width = __builtin_popcount(mask);
    const int base = mask ? __builtin_ctz(mask) : 0;
    const unsigned run = width == 32 ? 0xffffffffu : ((1u << width) - 1u) << base;
    if ((width != 8 && width != 16 && width != 32) || base % width || mask != run ||
        !((mask >> lane) & 1u)) {
        std::fprintf(stderr, "host_cuda.h: shuffle mask %08x from lane %d\n", mask, lane);
        std::abort();
    }
    return w.bars[32 / width + base / width];
}

// Every lane in mask writes its value, then reads lane from_lane(lane)'s.
template <typename F>
double emu_exchange(unsigned mask, double v, F from_lane) {
    const int t = emu_tid(), lane = t & 31;
    WarpState& w = *g_warps[g_cur->rank * ((blockDim.x * blockDim.y + 31) / 32) + (t >> 5)];
    EmuBarrier& bar = emu_lanes(w, mask, lane);
    w.buf[lane] = v;
    emu_wait(bar);
    const int from = from_lane(lane) & 31;
    if (!((mask >> from) & 1u)) {
        std::fprintf(stderr, "host_cuda.h: lane %d reads lane %d outside mask %08x\n", lane, from, mask);
        std::abort();
    }
    const double r = w.buf[from];
    emu_wait(bar);
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

inline void emu_fiber_main() {
    g_body();
    g_cur->done = true;  // and back to the scheduler through uc_link
}

// Stacks for n fibers, each with a guard page below it, kept for later launches.
inline void emu_stacks(std::size_t n) {
    if (n <= g_stack_slots) return;
    const std::size_t page = (std::size_t)sysconf(_SC_PAGESIZE);
    const std::size_t slot = page + (EMU_STACK_BYTES + page - 1) / page * page;
    if (g_stacks) munmap(g_stacks, g_stack_slots * g_stack_slot_bytes);
    void* m = mmap(nullptr, n * slot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        std::perror("host_cuda.h: fiber stacks");
        std::abort();
    }
    g_stacks = static_cast<unsigned char*>(m);
    for (std::size_t i = 0; i < n; ++i) mprotect(g_stacks + i * slot, page, PROT_NONE);
    g_stack_slots = n;
    g_stack_slot_bytes = slot;
}

// Run one cluster of blocks (one block, as most launches are): fibers hand over to one
// another at barriers; a fiber that finishes returns here, and the next one that can
// run goes on. n: threads a block; the cluster's first block is at (bx, by).
inline void emu_block(unsigned n, unsigned bx, unsigned by) {
    const std::size_t page = (std::size_t)sysconf(_SC_PAGESIZE);
    g_block_threads = n * g_cluster;
    g_finished = 0;
    for (unsigned i = 0; i < g_block_threads; ++i) {
        EmuFiber& f = g_fibers[i];
        const unsigned t = i % n;
        f.rank = i / n;
        f.idx = dim3{t % blockDim.x, t / blockDim.x, 1};
        f.blk = dim3{bx + f.rank, by, 1};
        f.wait_gen = nullptr;
        f.done = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = g_stacks + i * g_stack_slot_bytes + page;
        f.ctx.uc_stack.ss_size = g_stack_slot_bytes - page;
        f.ctx.uc_link = &g_sched;
        makecontext(&f.ctx, emu_fiber_main, 0);
    }
    unsigned from = 0;
    while (g_finished < g_block_threads) {
        EmuFiber* f = emu_runnable(from);
        if (!f) emu_deadlock();
        g_cur = f;
        threadIdx = f->idx;
        blockIdx = f->blk;
        swapcontext(&g_sched, &f->ctx);
        ++g_finished;  // g_cur finished
        from = emu_next_turn(g_cur);
    }
}

// cluster: blocks a cluster (__cluster_dims__ of the kernel), consecutive in x; the
// grid's x must be a multiple of it, as a GPU requires.
template <typename... A>
void emu_launch(void (*k)(A...), dim3 g, dim3 b, void** args, unsigned shared_bytes = 0,
                unsigned cluster = 1) {
    const std::lock_guard<std::mutex> one_at_a_time(g_launch);
    if (cluster == 0 || g.x % cluster) {
        std::fprintf(stderr, "host_cuda.h: a grid of %u blocks in clusters of %u\n", g.x, cluster);
        std::abort();
    }
    gridDim = g;
    blockDim = b;
    g_cluster = cluster;
    g_dyn_bytes = shared_bytes;
    g_dyn.resize((shared_bytes + 15) / 16);
    const unsigned n = b.x * b.y;
    emu_stacks(n * cluster);
    g_fibers.resize(n * cluster);
    g_body = [k, args] { emu_call(k, args, std::index_sequence_for<A...>{}); };

    // A block that runs on and on (a loop that never ends) aborts, naming the block,
    // rather than hang the test run.
    std::mutex dog_mu;
    std::condition_variable dog_cv;
    unsigned long long blocks_done = 0;
    bool launch_done = false;
    dim3 current{};
    std::thread dog([&] {
        std::unique_lock<std::mutex> lk(dog_mu);
        while (!launch_done) {
            const unsigned long long seen = blocks_done;
            if (!dog_cv.wait_for(lk, std::chrono::seconds(EMU_BLOCK_SECONDS),
                                 [&] { return launch_done || blocks_done != seen; })) {
                std::fprintf(stderr,
                             "host_cuda.h: block (%u, %u) of %u threads ran for more "
                             "than %d s\n",
                             current.x, current.y, n, EMU_BLOCK_SECONDS);
                std::abort();
            }
        }
    });
    for (unsigned by = 0; by < g.y; ++by) {
        for (unsigned bx = 0; bx < g.x; bx += cluster) {
            {
                const std::lock_guard<std::mutex> lk(dog_mu);
                current = dim3{bx, by, 1};
            }
            blockIdx = dim3{bx, by, 1};
            g_block_bars.assign(cluster, EmuBarrier{n, 0, 0});
            g_cluster_bar = EmuBarrier{n * cluster, 0, 0};
            // as dynamic shared memory, scratch starts as NaN in every block
            g_cta.assign(cluster, std::vector<double>(EMU_CTA_DOUBLES, std::nan("")));
            if (!g_dyn.empty()) std::memset(g_dyn.data(), 0xff, g_dyn.size() * sizeof(EmuChunk));
            g_warps.clear();
            for (unsigned w = 0; w < cluster * ((n + 31) / 32); ++w)
                g_warps.push_back(std::make_unique<WarpState>());
            emu_block(n, bx, by);
            const std::lock_guard<std::mutex> lk(dog_mu);
            ++blocks_done;
            dog_cv.notify_one();
        }
    }
    {
        const std::lock_guard<std::mutex> lk(dog_mu);
        launch_done = true;
    }
    dog_cv.notify_one();
    dog.join();
}
