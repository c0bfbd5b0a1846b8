// Fused bias + activation + gain + clamp, elementwise (spec-stylenerf.md sections 2.1 and 5).
// Python side: torch_utils/ops/bias_act.py, which owns the argument checks and the autograd wiring.
#pragma once

#include <ATen/ATen.h>

namespace nerffs {

// Activation codes; must match ActivationSpec.cuda_idx in bias_act.py.
enum ActCode : int64_t {
  kLinear = 0,
  kRelu = 1,
  kLrelu = 2,
  kTanh = 3,
  kSigmoid = 4,
  kElu = 5,
  kSelu = 6,
  kSoftplus = 7,
  kSwish = 8,
  kNumActs = 9,
};

// With v = x + b (b broadcast along dimension `dim` of x, or absent when b is empty) and f the
// activation selected by `act` (parameter `alpha` for lrelu slope / elu scale), returns elementwise:
//   order 0:  clamp(f(v) * gain, -clamp, clamp)
//   order 1:  dy * gain * f'(v)  * [|f(v) * gain| <= clamp]
//   order 2:  dy * gain * f''(v) * [|f(v) * gain| <= clamp]
// A negative `clamp` disables clamping (the mask is then 1). x must be dense (any dimension order);
// dy (orders 1 and 2) has exactly x's sizes and strides; the result has them too.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t dim,
                         int64_t act, int64_t order, double alpha, double gain, double clamp);

}  // namespace nerffs
