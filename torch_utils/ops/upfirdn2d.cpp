// Python binding and argument checks for the upfirdn2d CUDA kernel (see upfirdn2d.h).
#include <torch/extension.h>

#include "upfirdn2d.h"

namespace {

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip_filter,
                     double gain) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "upfirdn2d: x must be floating point, got ", x.scalar_type());
  const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: f must be a non-empty [fh, fw] tensor, got ", f.sizes());
  TORCH_CHECK(f.device() == x.device() && f.scalar_type() == acc && f.is_contiguous(),
              "upfirdn2d: f must be contiguous, on x's device, of dtype ", acc);
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up/down factors must be >= 1");
  const int64_t span_y = x.size(2) * up_y + pad_y0 + pad_y1 - f.size(0);
  const int64_t span_x = x.size(3) * up_x + pad_x0 + pad_x1 - f.size(1);
  TORCH_CHECK(span_y >= 0 && span_x >= 0, "upfirdn2d: empty output for input ", x.sizes(), " and filter ", f.sizes());
  const nerffs::UpFirDn2dArgs args{up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, gain};
  return nerffs::upfirdn2d_cuda(x, f, args);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR-filter and downsample [N, C, H, W] maps; see upfirdn2d.h",
        py::arg("x"), py::arg("f"), py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"),
        py::arg("pad_x0"), py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"), py::arg("flip_filter"),
        py::arg("gain"));
}
