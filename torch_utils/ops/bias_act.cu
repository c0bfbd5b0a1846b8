// CUDA kernel for bias_act (see bias_act.h for the exact formulas).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "bias_act.h"

namespace nerffs {
namespace {

struct BiasActArgs {
  int64_t numel;
  int64_t dim_stride;  // memory stride of the bias dimension: element i has bias index (i / dim_stride) % dim_size
  int64_t dim_size;
  bool has_bias;
  int64_t act;
  int64_t order;
  double alpha;
  double gain;
  double clamp;  // < 0: no clamp
};

__device__ __forceinline__ float dev_exp(float v) { return expf(v); }
__device__ __forceinline__ double dev_exp(double v) { return exp(v); }
__device__ __forceinline__ float dev_tanh(float v) { return tanhf(v); }
__device__ __forceinline__ double dev_tanh(double v) { return tanh(v); }
__device__ __forceinline__ float dev_log1p(float v) { return log1pf(v); }
__device__ __forceinline__ double dev_log1p(double v) { return log1p(v); }

// Value, first and second derivative of an activation at v.
template <typename T>
struct ActValue {
  T f, d1, d2;
};

template <typename T>
__device__ __forceinline__ T sigmoid_of(T v) {
  return T(1) / (T(1) + dev_exp(-v));
}

template <typename T>
__device__ ActValue<T> activate(int64_t act, T v, T alpha) {
  switch (act) {
    case kRelu:
      return v > T(0) ? ActValue<T>{v, T(1), T(0)} : ActValue<T>{T(0), T(0), T(0)};
    case kLrelu:
      return v > T(0) ? ActValue<T>{v, T(1), T(0)} : ActValue<T>{alpha * v, alpha, T(0)};
    case kTanh: {
      const T t = dev_tanh(v);
      const T d = T(1) - t * t;
      return {t, d, T(-2) * t * d};
    }
    case kSigmoid: {
      const T s = sigmoid_of(v);
      const T d = s * (T(1) - s);
      return {s, d, d * (T(1) - T(2) * s)};
    }
    case kElu: {
      if (v > T(0)) return {v, T(1), T(0)};
      const T e = dev_exp(v);
      return {alpha * (e - T(1)), alpha * e, alpha * e};
    }
    case kSelu: {
      // Self-normalising constants (Klambauer et al. 2017).
      const T scale = T(1.0507009873554804934193349852946);
      const T a = T(1.6732632423543772848170429916717);
      if (v > T(0)) return {scale * v, scale, T(0)};
      const T e = dev_exp(v);
      return {scale * a * (e - T(1)), scale * a * e, scale * a * e};
    }
    case kSoftplus: {
      // Same threshold as torch.nn.functional.softplus (beta 1, threshold 20): linear above it.
      const T s = sigmoid_of(v);
      return {v > T(20) ? v : dev_log1p(dev_exp(v)), s, s * (T(1) - s)};
    }
    case kSwish: {
      const T s = sigmoid_of(v);
      return {v * s, s * (T(1) + v * (T(1) - s)), s * (T(1) - s) * (T(2) + v * (T(1) - T(2) * s))};
    }
    default:  // kLinear
      return {v, T(1), T(0)};
  }
}

template <typename scalar_t>
__global__ void bias_act_kernel(BiasActArgs p, const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                const scalar_t* __restrict__ dy, scalar_t* __restrict__ out) {
  using acc_t = at::acc_type<scalar_t, true>;
  const acc_t alpha = static_cast<acc_t>(p.alpha);
  const acc_t gain = static_cast<acc_t>(p.gain);
  const acc_t clamp = static_cast<acc_t>(p.clamp);
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    acc_t v = static_cast<acc_t>(x[i]);
    if (p.has_bias) v += static_cast<acc_t>(b[(i / p.dim_stride) % p.dim_size]);
    const ActValue<acc_t> a = activate<acc_t>(p.act, v, alpha);
    const acc_t y = a.f * gain;
    acc_t result;
    if (p.order == 0) {
      result = clamp >= acc_t(0) ? (y > clamp ? clamp : (y < -clamp ? -clamp : y)) : y;
    } else {
      const bool inside = clamp < acc_t(0) || (y >= -clamp && y <= clamp);
      const acc_t slope = p.order == 1 ? a.d1 : a.d2;
      result = inside ? static_cast<acc_t>(dy[i]) * gain * slope : acc_t(0);
    }
    out[i] = static_cast<scalar_t>(result);
  }
}

}  // namespace

at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t dim,
                         int64_t act, int64_t order, double alpha, double gain, double clamp) {
  const c10::cuda::OptionalCUDAGuard guard(x.device());
  // x is dense, so empty_like keeps its strides: x, dy and out are then all walked with one linear index.
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return out;

  BiasActArgs p;
  p.numel = x.numel();
  p.dim_stride = x.dim() > 0 ? std::max<int64_t>(x.stride(dim), 1) : 1;
  p.dim_size = x.dim() > 0 ? x.size(dim) : 1;
  p.has_bias = b.numel() > 0;
  p.act = act;
  p.order = order;
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp;

  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((p.numel + threads - 1) / threads, int64_t(1) << 20);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
    bias_act_kernel<scalar_t><<<static_cast<unsigned int>(blocks), threads, 0, stream>>>(
        p, x.data_ptr<scalar_t>(), p.has_bias ? b.data_ptr<scalar_t>() : nullptr,
        order > 0 ? dy.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace nerffs
