// FIR filtering with integer up/down-sampling of [N, C, H, W] maps (spec-stylenerf.md section 5).
// Python side: torch_utils/ops/upfirdn2d.py, which owns the argument checks and the autograd wiring.
#pragma once

#include <ATen/ATen.h>

namespace nerffs {

struct UpFirDn2dArgs {
  int64_t up_x, up_y;
  int64_t down_x, down_y;
  int64_t pad_x0, pad_x1, pad_y0, pad_y1;  // negative values crop
  bool flip_filter;
  double gain;
};

// For every output sample (n, c, oy, ox), with xu the input after inserting up-1 zeros after each
// sample along each axis (and zero outside the map):
//   y[n, c, oy, ox] = gain * sum_{ty < fh, tx < fw} w[ty, tx] * xu[n, c, oy * down_y + ty - pad_y0,
//                                                                ox * down_x + tx - pad_x0]
// where w = f flipped along both axes (true convolution), or w = f when flip_filter.
// Output size: (H * up_y + pad_y0 + pad_y1 - fh) / down_y + 1 by (W * up_x + pad_x0 + pad_x1 - fw) / down_x + 1.
// x: CUDA, any strides; f: [fh, fw] contiguous on x's device, float64 when x is float64, else float32.
// Returns a contiguous tensor of x's dtype.
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, const UpFirDn2dArgs& args);

}  // namespace nerffs
