// Python binding and argument checks for the bias_act CUDA kernel (see bias_act.h).
#include <torch/extension.h>

#include "bias_act.h"

namespace {

at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t dim, int64_t act,
                    int64_t order, double alpha, double gain, double clamp) {
  TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "bias_act: x must be floating point, got ", x.scalar_type());
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some dimension order)");
  TORCH_CHECK(act >= 0 && act < nerffs::kNumActs, "bias_act: unknown activation code ", act);
  TORCH_CHECK(order >= 0 && order <= 2, "bias_act: order must be 0, 1 or 2, got ", order);
  TORCH_CHECK((x.dim() == 0 && dim == 0) || (dim >= 0 && dim < x.dim()), "bias_act: dim ", dim,
              " out of range for a ", x.dim(), "-d tensor");
  if (b.numel() > 0) {
    TORCH_CHECK(x.dim() > 0 && b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: bias of shape ", b.sizes(),
                " does not fit dimension ", dim, " of x ", x.sizes());
    TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type() && b.is_contiguous(),
                "bias_act: bias must be contiguous, on x's device, with x's dtype");
  }
  if (order == 0) {
    TORCH_CHECK(dy.numel() == 0, "bias_act: dy must be empty for order 0");
  } else {
    TORCH_CHECK(dy.sizes() == x.sizes() && dy.strides() == x.strides(), "bias_act: dy must have x's sizes and strides");
    TORCH_CHECK(dy.device() == x.device() && dy.scalar_type() == x.scalar_type(),
                "bias_act: dy must be on x's device with x's dtype");
  }
  return nerffs::bias_act_cuda(x, b, dy, dim, act, order, alpha, gain, clamp);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act,
        "Fused bias + activation + gain + clamp, or its first/second derivative (order 0/1/2); see bias_act.h",
        py::arg("x"), py::arg("b"), py::arg("dy"), py::arg("dim"), py::arg("act"), py::arg("order"),
        py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
}
