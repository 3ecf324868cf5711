// Multi-tensor optimiser steps (torch._foreach_*), for a GPU: one launch per operation for
// all of a network's parameters instead of one per parameter. At a streaming batch of 51
// the step is bound by the host issuing kernels (BENCHMARKS.md, "On a GPU"), and tch 0.26
// exposes no _foreach_ operator (they take and return tensor lists), hence this shim. The
// rules are PyTorch's torch.optim SGD (dampening 0, not Nesterov) and Adamax, the same as
// the per-tensor loop of src/train/optim.rs.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <string>
#include <exception>
#include <vector>

namespace {
// The message of the exception libtorch threw, for the caller's error.
thread_local std::string last_error;

int failed(const std::exception& e) {
  // libtorch's errors carry a C++ stack trace in what(): keep the message only.
  auto c10_error = dynamic_cast<const c10::Error*>(&e);
  last_error = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  return -1;
}

int failed_unknown() {
  last_error = "an exception that is not a std::exception";
  return -1;
}

std::vector<at::Tensor> list(const at::Tensor* const* ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}
}  // namespace

extern "C" {

// The message of the last exception caught on this thread (valid until the next call).
const char* remind_optim_last_error() { return last_error.c_str(); }

// One SGD step over n parameters (at::Tensor* each): params[i] -= lr * buf[i], where
// buf[i] = momentum * buf[i] + (grads[i] + weight_decay * params[i]) (buf[i] = the decayed
// gradient on the first step, `first` != 0; no buffer when momentum is 0). The tensors are
// updated in place. Returns 0, or -1 when libtorch threw (the tensors may then be partly
// updated: the caller must stop training).
int remind_sgd_foreach(const at::Tensor* const* params, const at::Tensor* const* grads,
                       const at::Tensor* const* bufs, int n, double lr, double momentum,
                       double weight_decay, int first) {
  try {
    c10::AutoGradMode no_grad(false);
    auto p = list(params, n);
    auto g = list(grads, n);
    auto b = list(bufs, n);
    auto d = weight_decay != 0.0 ? at::_foreach_add(g, p, weight_decay) : g;
    if (momentum != 0.0) {
      if (first != 0) {
        at::_foreach_copy_(b, d);
      } else {
        at::_foreach_mul_(b, momentum);
        at::_foreach_add_(b, d);
      }
      at::_foreach_add_(p, b, -lr);
    } else {
      at::_foreach_add_(p, d, -lr);
    }
    return 0;
  } catch (const std::exception& e) {
    return failed(e);
  } catch (...) {
    return failed_unknown();
  }
}

// One Adamax step over n parameters: m = beta1 m + (1 - beta1) g, u = max(beta2 u,
// |g| + eps), params -= step_size * m / u, with g the gradient plus weight_decay * params
// and step_size = lr / (1 - beta1^t), computed by the caller. Returns 0, or -1 when
// libtorch threw (as above).
int remind_adamax_foreach(const at::Tensor* const* params, const at::Tensor* const* grads,
                          const at::Tensor* const* ms, const at::Tensor* const* us, int n,
                          double step_size, double beta1, double beta2, double eps,
                          double weight_decay) {
  try {
    c10::AutoGradMode no_grad(false);
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(ms, n);
    auto u = list(us, n);
    auto d = weight_decay != 0.0 ? at::_foreach_add(g, p, weight_decay) : g;
    at::_foreach_mul_(m, beta1);
    at::_foreach_add_(m, d, 1.0 - beta1);
    auto a = at::_foreach_abs(d);
    at::_foreach_add_(a, eps);
    at::_foreach_mul_(u, beta2);
    at::_foreach_maximum_(u, a);
    at::_foreach_addcdiv_(p, m, u, -step_size);
    return 0;
  } catch (const std::exception& e) {
    return failed(e);
  } catch (...) {
    return failed_unknown();
  }
}

// Zeroes n tensors (the gradients) in place. Returns 0, or -1 when libtorch threw.
int remind_foreach_zero(const at::Tensor* const* ts, int n) {
  try {
    c10::AutoGradMode no_grad(false);
    auto v = list(ts, n);
    at::_foreach_zero_(v);
    return 0;
  } catch (const std::exception& e) {
    return failed(e);
  } catch (...) {
    return failed_unknown();
  }
}

}  // extern "C"
