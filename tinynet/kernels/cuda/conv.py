"""2-d convolution on the GPU as three implicit-GEMM kernels: one launch forward, two backward,
and no im2col buffer (CUDA C, through CuPy).

The definitions are those of :mod:`tinynet.functional.conv`: with ``cols = im2col(x)``, per group,

    forward            Y  = W @ cols + b         M = C_out/G,  K = C/G*kh*kw,      N = batch*OH*OW
    backward (input)   dx = col2im(W.T @ dY)     M = C/G,      K = C_out/G*kh*kw,  N = batch*H*W
    backward (weight)  dW = dY @ cols.T          M = C_out/G,  K = batch*OH*OW,    N = C/G*kh*kw (+1: db)

Each is a matrix product whose operands are *read in place* from x, W and dY: an entry of cols
is the input pixel it would have copied (or 0 in the padding), fetched when the product needs it
("implicit GEMM", as cuDNN does). So a convolution keeps no cols matrix (C*kh*kw times its
input; 15 MB for LeNet at batch 256) and no channel-major copies, and launches 3 kernels a step
where im2col + cuBLAS took 7: im2col, the GEMM and the bias/layout pass forward; the layout pass
with db, two GEMMs and col2im backward. A small model's GPU step is paid per launch.

The product, shared by the three kernels (``accumulate_tile``): a block of 64 threads computes
a 64 x 64 tile of the result. For each slice of 16 along the sum it copies the 64 x 16 piece of
the left operand and the 16 x 64 piece of the right one into shared memory (each thread fetching
16 of each, neighbouring threads neighbouring addresses), waits (``__syncthreads``), and each
thread adds the products for its own 8 x 8 outputs (rows ``ty + 8 i``, columns ``tx + 8 j``),
held in registers. Every fetched value is used 64 times from shared memory instead of once
from global memory, and each value read from shared memory serves 8 multiply-adds (the 2-d
register tiling of fast hand-written SGEMMs; cuBLAS and cuDNN go further).

* ``conv_forward`` writes ``y`` in NCHW order directly, the bias added to each output.
* ``conv_backward_input`` is the same product with the roles turned round: row ``c`` of W.T
  is ``W[o, c, i, j]`` over (o, i, j), and the right operand's entry for (o, i, j) and the
  pixel (h, w) is the output gradient of the window that read (h, w) through offset (i, j)
  (the gather of col2im: ``oh*sh = h + top - i*dh``, when that is a multiple of the stride),
  or 0.
* ``conv_backward_weight`` sums over the batch's positions, a long sum into few outputs (LeNet's
  first layer: 150 weights, each a sum of 147,456 products at batch 256), so the sum is split
  across blocks ("split-K"): block ``s`` of a tile sums its share into a workspace, and the last
  block of the tile to finish (a device-wide counter per tile, ``atomicAdd`` after a
  ``__threadfence``) adds the shares in order 0, 1, 2, ..., so the result does not depend on
  which block finished last, writes dW, and resets the counter for the next launch. The bias
  gradient is one more column of the same product whose right operand is all ones:
  ``db[o] = sum dY[:, o]``.

The products' own indices (rows, columns, the sum's k) are 32-bit ``int``s, cheaper to divide
than 64-bit ones (each fetch decodes its k into (c, i, j)); every product dimension must be
below 2^31 (checked before launching). Offsets into the arrays are 64-bit (``long long``).
"""
from __future__ import annotations

import functools

import numpy as np

from ...backend import get_array_module
from .launch import CudaModule

__all__ = ["conv2d_forward_cuda", "conv2d_backward_input_cuda", "conv2d_backward_weight_cuda", "TILE", "MODULE"]

TILE = 64            # rows and columns of a block's tile of the product
TILE_K = 16          # the slice of the sum held in shared memory at a time
PER_THREAD = 8       # a thread's outputs: PER_THREAD x PER_THREAD of the tile
TILE_THREADS = (TILE // PER_THREAD) ** 2   # 8 x 8 = 64 threads
TARGET_BLOCKS = 256  # split dW's sum until about this many blocks run (a GPU has ~100 SMs)
MIN_SPLIT = 8 * TILE_K  # but give each block at least this much of the sum

SOURCE = rf"""
#define TILE {TILE}
#define TILE_K {TILE_K}
#define PER_THREAD {PER_THREAD}
#define TILE_THREADS {TILE_THREADS}
#define SPAN (TILE / PER_THREAD)                  // a thread's outputs are SPAN apart in each direction
#define A_ROW_STEP (TILE_THREADS / TILE_K)        // A's fetch: the rows a thread fetches are this far apart
#define B_ROW_STEP (TILE_THREADS / TILE)          // B's fetch: likewise
#define A_STRIDE (TILE + 1)   // the left operand's tile is stored k-major; +1 spreads its writes over the banks
""" + r"""
static_assert(TILE % PER_THREAD == 0 && TILE_THREADS == SPAN * SPAN && TILE_THREADS % TILE_K == 0 &&
              TILE_THREADS % TILE == 0 && TILE % A_ROW_STEP == 0 && TILE_K % B_ROW_STEP == 0,
              "accumulate_tile's fetch pattern: every thread fetches whole rows of the tiles");

// The geometry of one convolution, as the kernels receive it.
struct Conv {
    int n_batch, channels, height, width, out_channels, out_h, out_w, kh, kw, sh, sw, top, left, dh, dw, groups;
};

// A position (oh, ow) of image img in the output: what a column index of cols decodes to.
struct Position { int img, oh, ow; bool valid; };

__device__ __forceinline__ Position position(const Conv& v, int n) {
    int positions = v.out_h * v.out_w, p = n % positions;
    return Position{n / positions, p / v.out_w, p % v.out_w, n < v.n_batch * positions};
}

// x_padded[img, channel, oh*sh + i*dh, ow*sw + j*dw] for row k = (c, i, j) of group g's cols
// and column `at`: an entry of im2col, read where it lies (0 in the padding).
__device__ __forceinline__ T window_pixel(const T* x, const Conv& v, int g, int k, const Position& at) {
    int per_channel = v.kh * v.kw, c = k / per_channel, r = k - c * per_channel, i = r / v.kw, j = r - i * v.kw;
    int h = at.oh * v.sh - v.top + i * v.dh, w = at.ow * v.sw - v.left + j * v.dw;
    if (!at.valid || h < 0 || h >= v.height || w < 0 || w >= v.width) return (T)0;
    long long channel = g * (v.channels / v.groups) + c;
    return x[(((long long)at.img * v.channels + channel) * v.height + h) * v.width + w];
}

// acc[PER_THREAD i + j] += sum over k in [k_begin, k_end) of A(m0 + ty + SPAN i, k) * B(k, n0 + tx + SPAN j), A
// and B fetched by `operands.a(m, k)` and `operands.b(k, column)` (each 0 outside its matrix),
// one TILE_K slice of the sum at a time through the shared tiles a_tile (TILE_K x A_STRIDE) and
// b_tile (TILE_K x TILE). Each thread fetches the same column of B throughout, so what that
// column index means (`operands.column(n)`: an output position, an input pixel) is worked out once.
template <class Operands>
__device__ void accumulate_tile(const Operands& operands, T* a_tile, T* b_tile, int m0, int n0, int k_begin,
                                int k_end, T* acc) {
    int t = threadIdx.x, tx = t % SPAN, ty = t / SPAN;
    int a_k = t % TILE_K, a_m = t / TILE_K;   // fetches A at rows m0 + a_m + A_ROW_STEP r, column k0 + a_k
    int b_k = t / TILE, b_n = t % TILE;       // fetches B at rows k0 + b_k + B_ROW_STEP r, column n0 + b_n
    typename Operands::Column column = operands.column(n0 + b_n);
    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (int m = a_m; m < TILE; m += A_ROW_STEP)   // neighbouring threads: neighbouring k (W's rows)
            a_tile[a_k * A_STRIDE + m] = k0 + a_k < k_end ? operands.a(m0 + m, k0 + a_k) : (T)0;
        for (int k = b_k; k < TILE_K; k += B_ROW_STEP)   // neighbouring threads: neighbouring n
            b_tile[k * TILE + b_n] = k0 + k < k_end ? operands.b(k0 + k, column) : (T)0;
        __syncthreads();
        // Unrolled, so that acc, a and b live in registers (a loop the compiler keeps would
        // put acc in local memory, which it can only index by address).
#pragma unroll
        for (int k = 0; k < TILE_K; ++k) {
            T a[PER_THREAD], b[PER_THREAD];
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i) a[i] = a_tile[k * A_STRIDE + ty + SPAN * i];
#pragma unroll
            for (int j = 0; j < PER_THREAD; ++j) b[j] = b_tile[k * TILE + tx + SPAN * j];
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i)
#pragma unroll
                for (int j = 0; j < PER_THREAD; ++j) acc[PER_THREAD * i + j] += a[i] * b[j];
        }
        __syncthreads();   // before the next slice overwrites the tiles
    }
}

// Forward, group g: A = W_g (C_out/G, K), B = cols_g (K, batch*OH*OW).
struct ForwardOperands {
    typedef Position Column;
    const T* x; const T* weight; Conv v; int g, rows, depth;
    __device__ Position column(int n) const { return position(v, n); }
    __device__ T a(int m, int k) const {
        return m < rows ? weight[((long long)g * rows + m) * depth + k] : (T)0;
    }
    __device__ T b(int k, const Position& at) const { return window_pixel(x, v, g, k, at); }
};

// An input pixel (h, w) of image img: what a column of the input gradient's product decodes to.
struct Pixel { int img, h, w; bool valid; };

// Backward to the input, group g: A = W_g.T (C/G, C_out/G*kh*kw), B = dY gathered back to each
// input pixel: B[(o, i, j), (img, h, w)] = dY[img, o, oh, ow] for the window (oh, ow) that read
// (h, w) through offset (i, j), else 0.
struct InputOperands {
    typedef Pixel Column;
    const T* grad; const T* weight; Conv v; int g, rows, depth;
    __device__ Pixel column(int n) const {
        int pixels = v.height * v.width, p = n % pixels;
        return Pixel{n / pixels, p / v.width, p % v.width, n < v.n_batch * pixels};
    }
    __device__ T a(int c, int k) const {
        if (c >= rows) return (T)0;
        int per_channel = v.kh * v.kw, o = k / per_channel;
        return weight[(((long long)g * (v.out_channels / v.groups) + o) * rows + c) * per_channel + (k - o * per_channel)];
    }
    __device__ T b(int k, const Pixel& at) const {
        if (!at.valid) return (T)0;
        int per_channel = v.kh * v.kw, o = k / per_channel, r = k - o * per_channel, i = r / v.kw, j = r - i * v.kw;
        int start_h = at.h + v.top - i * v.dh, start_w = at.w + v.left - j * v.dw;  // = oh*sh, ow*sw of that window
        if (start_h < 0 || start_w < 0 || start_h % v.sh != 0 || start_w % v.sw != 0) return (T)0;
        int oh = start_h / v.sh, ow = start_w / v.sw;
        if (oh >= v.out_h || ow >= v.out_w) return (T)0;
        long long channel = g * (v.out_channels / v.groups) + o;
        return grad[(((long long)at.img * v.out_channels + channel) * v.out_h + oh) * v.out_w + ow];
    }
};

// Backward to the weight, group g: A = dY_g (C_out/G, batch*OH*OW), B = cols_g.T, whose columns
// are the weight's (c, i, j) when weight_columns > 0, then one column of ones for db when has_bias.
struct WeightOperands {
    typedef int Column;
    const T* grad; const T* x; Conv v; int g, rows, weight_columns, has_bias;
    __device__ int column(int k) const { return k; }
    __device__ T a(int o, int l) const {
        if (o >= rows) return (T)0;
        int positions = v.out_h * v.out_w, img = l / positions;
        return grad[((long long)img * v.out_channels + g * rows + o) * positions + (l - img * positions)];
    }
    __device__ T b(int l, int k) const {
        if (k >= weight_columns) return k == weight_columns && has_bias ? (T)1 : (T)0;
        return window_pixel(x, v, g, k, position(v, l));
    }
};

// Every kernel ends its parameters with CONV_ARGS (written out in full before compiling, so that
// each launch's arguments are checked against them) and makes its Conv with CONV_GEOMETRY.
#define CONV_GEOMETRY Conv{n_batch, channels, height, width, out_channels, out_h, out_w, kh, kw, sh, sw, top, left, \
                           dh, dw, groups}

// The block's tile of a product whose rows are channels first_channel + m (m < rows) of an NCHW
// array `out` (`channels` channels of `plane` values) and whose columns are (image, place in the
// plane), n < columns: the layout of both the output and the input gradient. `bias`: added per
// channel when not null.
__device__ void store_nchw_tile(T* out, const T* bias, const T* acc, int first_channel, int m0, int n0, int rows,
                                int channels, int plane, int columns) {
    int tx = threadIdx.x % SPAN, ty = threadIdx.x / SPAN;
    for (int i = 0; i < PER_THREAD; ++i) {
        int m = m0 + ty + SPAN * i;
        if (m >= rows) continue;
        int channel = first_channel + m;
        for (int j = 0; j < PER_THREAD; ++j) {
            int n = n0 + tx + SPAN * j;
            if (n >= columns) continue;
            int img = n / plane;
            T value = acc[PER_THREAD * i + j];
            out[((long long)img * channels + channel) * plane + (n - img * plane)] = bias ? value + bias[channel] : value;
        }
    }
}

// y (batch, C_out, OH, OW) = conv(x, weight) + bias. Grid: (column tiles, row tiles, groups).
extern "C" __global__ void conv_forward(const T* x, const T* weight, const T* bias, int has_bias, T* y, CONV_ARGS) {
    __shared__ T a_tile[TILE_K * A_STRIDE];
    __shared__ T b_tile[TILE_K * TILE];
    Conv v = CONV_GEOMETRY;
    int g = blockIdx.z, rows = out_channels / groups, positions = out_h * out_w, columns = n_batch * positions;
    ForwardOperands operands{x, weight, v, g, rows, (channels / groups) * kh * kw};
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    T acc[PER_THREAD * PER_THREAD] = {};
    accumulate_tile(operands, a_tile, b_tile, m0, n0, 0, operands.depth, acc);
    store_nchw_tile(y, has_bias ? bias : nullptr, acc, g * rows, m0, n0, rows, out_channels, positions, columns);
}

// grad_x (batch, C, H, W) from grad (batch, C_out, OH, OW). Grid: (column tiles, row tiles, groups).
extern "C" __global__ void conv_backward_input(const T* grad, const T* weight, T* grad_x, CONV_ARGS) {
    __shared__ T a_tile[TILE_K * A_STRIDE];
    __shared__ T b_tile[TILE_K * TILE];
    Conv v = CONV_GEOMETRY;
    int g = blockIdx.z, rows = channels / groups, pixels = height * width, columns = n_batch * pixels;
    InputOperands operands{grad, weight, v, g, rows, (out_channels / groups) * kh * kw};
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    T acc[PER_THREAD * PER_THREAD] = {};
    accumulate_tile(operands, a_tile, b_tile, m0, n0, 0, operands.depth, acc);
    store_nchw_tile(grad_x, nullptr, acc, g * rows, m0, n0, rows, channels, pixels, columns);
}

// grad_weight (C_out, C/G*kh*kw) and grad_bias (C_out) from grad and x. Grid: (column tiles,
// row tiles, groups * splits); block z = g * splits + s sums share s of the batch's positions
// (split_size of them). With splits > 1 the shares go to `partial` (groups * splits * rows *
// columns) and the tile's last block adds them up; `counters` (one per tile, zero between
// launches) tells it it is last.
extern "C" __global__ void conv_backward_weight(const T* grad, const T* x, T* grad_weight, T* grad_bias,
                                                int need_weight, int has_bias, int splits, int split_size,
                                                T* partial, unsigned int* counters, CONV_ARGS) {
    __shared__ T a_tile[TILE_K * A_STRIDE];
    __shared__ T b_tile[TILE_K * TILE];
    __shared__ int last;
    Conv v = CONV_GEOMETRY;
    int g = blockIdx.z / splits, s = blockIdx.z % splits, rows = out_channels / groups;
    int depth = n_batch * out_h * out_w, weight_columns = need_weight ? (channels / groups) * kh * kw : 0;
    int columns = weight_columns + has_bias;
    WeightOperands operands{grad, x, v, g, rows, weight_columns, has_bias};
    int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
    int k_begin = s * split_size, k_end = min(depth, k_begin + split_size);
    T acc[PER_THREAD * PER_THREAD] = {};
    accumulate_tile(operands, a_tile, b_tile, m0, n0, k_begin, k_end, acc);
    int tx = threadIdx.x % SPAN, ty = threadIdx.x / SPAN;
    if (splits > 1) {
        for (int i = 0; i < PER_THREAD; ++i)
            for (int j = 0; j < PER_THREAD; ++j) {
                int m = m0 + ty + SPAN * i, n = n0 + tx + SPAN * j;
                if (m < rows && n < columns)
                    partial[((long long)blockIdx.z * rows + m) * columns + n] = acc[PER_THREAD * i + j];
            }
        __threadfence();   // this block's share is visible to every block before the count says so
        __syncthreads();
        unsigned int tile = (g * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        if (threadIdx.x == 0) last = atomicAdd(&counters[tile], 1u) == (unsigned int)(splits - 1);
        __syncthreads();
        if (!last) return;
        // Read the other blocks' shares past this SM's L1 cache, which is not kept coherent with
        // other SMs' writes (volatile loads go to L2, where the fence put them).
        const volatile T* shares = partial;
        for (int i = 0; i < PER_THREAD * PER_THREAD; ++i) acc[i] = 0;
        // Shares in order 0, 1, 2, ...: the same sum whoever is last. The share loop is the outer
        // one, so that a thread's loads for its outputs are independent and in flight together.
        for (int share = 0; share < splits; ++share) {
            const volatile T* part = shares + ((long long)g * splits + share) * rows * columns;
#pragma unroll
            for (int i = 0; i < PER_THREAD; ++i)
#pragma unroll
                for (int j = 0; j < PER_THREAD; ++j) {
                    int m = m0 + ty + SPAN * i, n = n0 + tx + SPAN * j;
                    if (m < rows && n < columns) acc[PER_THREAD * i + j] += part[(long long)m * columns + n];
                }
        }
        if (threadIdx.x == 0) counters[tile] = 0;   // ready for the next launch
    }
    for (int i = 0; i < PER_THREAD; ++i) {
        int m = m0 + ty + SPAN * i;
        if (m >= rows) continue;
        for (int j = 0; j < PER_THREAD; ++j) {
            int n = n0 + tx + SPAN * j;
            if (n < weight_columns) grad_weight[((long long)g * rows + m) * weight_columns + n] = acc[PER_THREAD * i + j];
            else if (n == weight_columns && has_bias) grad_bias[g * rows + m] = acc[PER_THREAD * i + j];
        }
    }
}
"""

# The geometry parameters, spelled out in the source (a macro would hide them from the launch check).
CONV_ARGS = ("int n_batch, int channels, int height, int width, int out_channels, int out_h, int out_w, "
             "int kh, int kw, int sh, int sw, int top, int left, int dh, int dw, int groups")
MODULE = CudaModule("conv", SOURCE.replace("CONV_ARGS)", CONV_ARGS + ")"))


def _tiles(count: int) -> int:
    return max(1, -(-int(count) // TILE))


_INT_LIMIT = 2 ** 31


@functools.lru_cache(maxsize=256)
def _geometry_args(x_shape, weight_shape, out_hw, stride, top_left, dilation, groups):
    """The kernels' trailing geometry parameters (``CONV_ARGS``), as the C widths, once each
    product dimension is known to fit the kernels' 32-bit indices. Cached: a model has a few
    layer shapes, and making 16 NumPy scalars costs more host time than a launch."""
    n, c, h, w = x_shape
    c_out, _, kh, kw = weight_shape
    sizes = {"batch*OH*OW": n * out_hw[0] * out_hw[1], "batch*H*W": n * h * w, "C_out*kh*kw": c_out * kh * kw,
             "C*kh*kw": c * kh * kw}
    too_large = {name: size for name, size in sizes.items() if size >= _INT_LIMIT}
    if too_large:
        raise RuntimeError(f"conv2d: input {list(x_shape)} with weight {list(weight_shape)} is too large for the GPU "
                           f"kernels' 32-bit indices: {too_large} (each must be below 2**31); split the batch")
    ints = (n, c, h, w, c_out, *out_hw, kh, kw, *stride, *top_left, *dilation, groups)
    return tuple(np.int32(v) for v in ints)


def _args(x_shape, weight_shape, out_hw, stride, padding, dilation, groups):
    return _geometry_args(tuple(x_shape), tuple(weight_shape), tuple(out_hw), tuple(stride),
                          (padding[0][0], padding[1][0]), tuple(dilation), int(groups))


def conv2d_forward_cuda(x, weight, bias, out_hw, stride, padding, dilation, groups):
    """y = conv2d(x, weight) + bias (NCHW, ``out_hw`` = (OH, OW)) in one kernel. ``x`` (N, C, H, W)
    and ``weight`` (C_out, C/G, kh, kw) C-contiguous, ``bias`` (C_out,) or None, one dtype;
    ``padding`` as ((top, bottom), (left, right))."""
    xp = get_array_module(x)
    n, c_out = x.shape[0], weight.shape[0]
    y = xp.empty((n, c_out) + tuple(out_hw), dtype=x.dtype)
    if y.size:
        grid = (_tiles(n * out_hw[0] * out_hw[1]), _tiles(c_out // groups), groups)
        MODULE.launch("conv_forward", x.dtype, grid, (TILE_THREADS,),
                      (x, weight, weight if bias is None else bias, np.int32(bias is not None), y,
                       *_args(x.shape, weight.shape, out_hw, stride, padding, dilation, groups)))
    return y


def conv2d_backward_input_cuda(grad, weight, x_shape, stride, padding, dilation, groups):
    """dx (``x_shape``) of a convolution from its output gradient ``grad`` (N, C_out, OH, OW,
    C-contiguous) and ``weight``, in one kernel: col2im(W.T @ dY) without the columns."""
    xp = get_array_module(grad)
    grad_x = xp.empty(tuple(x_shape), dtype=grad.dtype)
    if grad_x.size:
        n, c, h, w = x_shape
        grid = (_tiles(n * h * w), _tiles(c // groups), groups)
        MODULE.launch("conv_backward_input", grad.dtype, grid, (TILE_THREADS,),
                      (grad, weight, grad_x,
                       *_args(x_shape, weight.shape, grad.shape[2:], stride, padding, dilation, groups)))
    return grad_x


# (array module, device) -> the split tiles' counters, zero between launches. One set per device:
# the kernels that use them run in order on the device's stream (or inside one CUDA graph).
_counters: dict = {}


def _tile_counters(xp, device, count: int):
    """At least ``count`` zeroed uint32 counters on ``device``, kept for later launches (every
    launch leaves them zero again). Grown, never shrunk; made outside a step after the first."""
    key = (xp, device)
    counters = _counters.get(key)
    if counters is None or counters.size < count:
        counters = _counters[key] = xp.zeros(max(count, 1024), dtype=np.uint32)
    return counters


def weight_splits(rows: int, columns: int, groups: int, depth: int) -> int:
    """Into how many shares ``conv_backward_weight`` splits a sum of ``depth`` products (the
    batch's positions): enough blocks to fill a GPU (``TARGET_BLOCKS``), each summing at least
    ``MIN_SPLIT`` of them."""
    tiles = _tiles(rows) * _tiles(columns) * groups
    wanted = -(-TARGET_BLOCKS // tiles)
    return max(1, min(wanted, depth // MIN_SPLIT, 65535 // groups))


def conv2d_backward_weight_cuda(grad, x, x_shape, weight_shape, stride, padding, dilation, groups, need_weight=True,
                                need_bias=True, out_weight=None, out_bias=None):
    """(dW, db) of a convolution from ``grad`` (N, C_out, OH, OW) and its input ``x`` (of
    ``x_shape``; None when only db is asked for), both C-contiguous, in one kernel: dW = dY @
    im2col(x).T without the columns, db = dY summed per channel (a column of ones in the same
    product). Each is None unless asked for; written into ``out_weight`` / ``out_bias``
    (contiguous, e.g. a parameter's reserved .grad) when given."""
    xp = get_array_module(grad)
    c_out, n = weight_shape[0], grad.shape[0]
    grad_weight = grad_bias = None
    if need_weight:
        grad_weight = xp.empty(tuple(weight_shape), dtype=grad.dtype) if out_weight is None else out_weight
    if need_bias:
        grad_bias = xp.empty(c_out, dtype=grad.dtype) if out_bias is None else out_bias
    rows = c_out // groups
    columns = (int(np.prod(weight_shape[1:])) if need_weight else 0) + int(need_bias)
    depth = n * grad.shape[2] * grad.shape[3]
    if depth == 0:  # an empty batch: every sum is empty
        for array in (grad_weight, grad_bias):
            if array is not None:
                array.fill(0)
        return grad_weight, grad_bias
    if columns == 0 or rows == 0:
        return grad_weight, grad_bias
    splits = weight_splits(rows, columns, groups, depth)
    split_size = -(-depth // splits)
    split_size = -(-split_size // TILE_K) * TILE_K     # whole slices of the sum per block
    splits = -(-depth // split_size)
    grid = (_tiles(columns), _tiles(rows), groups * splits)
    if splits > 1:
        partial = xp.empty(groups * splits * rows * columns, dtype=grad.dtype)
        counters = _tile_counters(xp, grad.device.id, grid[0] * grid[1] * groups)
    else:  # one share: the block writes dW itself; the workspace arguments are not read
        partial, counters = grad, _tile_counters(xp, grad.device.id, 1)
    placeholder = grad  # for an output not asked for: passed, never written
    MODULE.launch("conv_backward_weight", grad.dtype, grid, (TILE_THREADS,),
                  (grad, placeholder if x is None else x, placeholder if grad_weight is None else grad_weight,
                   placeholder if grad_bias is None else grad_bias, np.int32(need_weight), np.int32(need_bias),
                   np.int32(splits), np.int32(split_size), partial, counters,
                   *_args(x_shape, weight_shape, grad.shape[2:], stride, padding, dilation, groups)))
    return grad_weight, grad_bias
