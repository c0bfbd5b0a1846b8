// CUDA kernel for upfirdn2d: one thread per output sample (see upfirdn2d.h for the formula).
//
// Only the taps that meet a non-zero sample of the zero-inserted input are visited: along an axis,
// tap t reads xu[m + t] with m = o * down - pad0, which is an input sample iff up divides m + t, so
// the taps form an arithmetic sequence with step `up` starting at (-m) mod up.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "upfirdn2d.h"

namespace nerffs {
namespace {

struct KernelArgs {
  int64_t channels, in_h, in_w, out_h, out_w, fh, fw;
  int64_t stride_n, stride_c, stride_h, stride_w;  // input strides in elements
  int64_t total;                                   // number of output samples
  UpFirDn2dArgs op;
};

__device__ __forceinline__ int64_t positive_mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }

template <typename scalar_t>
__global__ void upfirdn2d_kernel(KernelArgs a, const scalar_t* __restrict__ x,
                                 const at::acc_type<scalar_t, true>* __restrict__ f, scalar_t* __restrict__ y) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += step) {
    const int64_t ox = i % a.out_w;
    const int64_t oy = (i / a.out_w) % a.out_h;
    const int64_t c = (i / (a.out_w * a.out_h)) % a.channels;
    const int64_t n = i / (a.out_w * a.out_h * a.channels);
    const scalar_t* plane = x + n * a.stride_n + c * a.stride_c;
    const int64_t my = oy * a.op.down_y - a.op.pad_y0;  // position in xu of tap ty = 0
    const int64_t mx = ox * a.op.down_x - a.op.pad_x0;
    acc_t sum = acc_t(0);
    for (int64_t ty = positive_mod(-my, a.op.up_y); ty < a.fh; ty += a.op.up_y) {
      const int64_t iy = (my + ty) / a.op.up_y;  // exact division
      if (iy < 0 || iy >= a.in_h) continue;
      const int64_t wy = a.op.flip_filter ? ty : a.fh - 1 - ty;
      for (int64_t tx = positive_mod(-mx, a.op.up_x); tx < a.fw; tx += a.op.up_x) {
        const int64_t ix = (mx + tx) / a.op.up_x;
        if (ix < 0 || ix >= a.in_w) continue;
        const int64_t wx = a.op.flip_filter ? tx : a.fw - 1 - tx;
        sum += f[wy * a.fw + wx] * static_cast<acc_t>(plane[iy * a.stride_h + ix * a.stride_w]);
      }
    }
    y[i] = static_cast<scalar_t>(sum * static_cast<acc_t>(a.op.gain));
  }
}

}  // namespace

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, const UpFirDn2dArgs& args) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  KernelArgs a;
  a.op = args;
  a.channels = x.size(1);
  a.in_h = x.size(2);
  a.in_w = x.size(3);
  a.fh = f.size(0);
  a.fw = f.size(1);
  a.out_h = (a.in_h * args.up_y + args.pad_y0 + args.pad_y1 - a.fh) / args.down_y + 1;
  a.out_w = (a.in_w * args.up_x + args.pad_x0 + args.pad_x1 - a.fw) / args.down_x + 1;
  a.stride_n = x.stride(0);
  a.stride_c = x.stride(1);
  a.stride_h = x.stride(2);
  a.stride_w = x.stride(3);
  at::Tensor y = at::empty({x.size(0), a.channels, a.out_h, a.out_w}, x.options());
  a.total = y.numel();
  if (a.total == 0) return y;

  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((a.total + threads - 1) / threads, int64_t(1) << 20);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    upfirdn2d_kernel<scalar_t><<<static_cast<unsigned int>(blocks), threads, 0, stream>>>(
        a, x.data_ptr<scalar_t>(), f.data_ptr<acc_t>(), y.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace nerffs
