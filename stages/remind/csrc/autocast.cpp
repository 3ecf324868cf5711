// libtorch's autocast for a device type and a lower-precision dtype. tch 0.26 exposes only
// the CUDA float16 switch (at::autocast::set_enabled), so this shim gives the streaming
// loop PyTorch's own mixed precision on the CPU and in bfloat16: the same op lists, the
// same per-region weight-cast cache, fp32 master weights left untouched.
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/DeviceGuard.h>

namespace {
c10::DeviceType device_of(int cuda) { return cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU; }
}  // namespace

extern "C" {

// Turns autocast in bfloat16 on or off for the CPU (cuda == 0) or CUDA (cuda != 0), on the
// calling thread (autocast state is thread-local). Returns whether it was on before, or -1
// when libtorch threw (the message is not kept: the arguments cannot be wrong).
int remind_autocast_bf16(int cuda, int enabled) {
  try {
    auto dev = device_of(cuda);
    bool before = at::autocast::is_autocast_enabled(dev);
    at::autocast::set_autocast_dtype(dev, at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, enabled != 0);
    return before ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Enters an autocast region (nesting count), as torch.autocast's __enter__ does.
int remind_autocast_enter() { return at::autocast::increment_nesting(); }

// Leaves an autocast region; the last one out clears the cache of cast weights, which
// would be stale after the optimiser steps.
int remind_autocast_exit() {
  int left = at::autocast::decrement_nesting();
  if (left == 0) at::autocast::clear_cache();
  return left;
}

// Whether CUDA device `index` computes bf16 natively (compute capability 8.0 or later:
// Ampere's tensor cores on), as libtorch's CUDA hooks report it: 1 when it does, 0 when the
// card is older, 2 when this libtorch has no cuDNN (the hooks cannot tell then), 3 when no
// CUDA backend is loaded, 4 when there is no such device, -1 when libtorch threw.
int remind_cuda_bf16_native(int index) {
  try {
    auto& hooks = at::detail::getCUDAHooks();
    if (!hooks.hasCUDA()) return 3;
    if (index < 0 || index >= hooks.getNumGPUs()) return 4;
    if (!hooks.hasCuDNN()) return 2;
    // The hooks ask the current device: make it `index` for the call.
    c10::DeviceGuard guard(c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index)));
    return hooks.supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
