// A CPU tensor's copy on a CUDA device, from pinned memory and without waiting for the
// stream. tch reaches pinning only through Tensor::pin_memory(device), whose device
// argument libtorch deprecates with a warning printed at every call.
#include <ATen/ATen.h>

extern "C" {

// `t` (an at::Tensor* on the CPU) copied to CUDA device `index` through a pinned staging
// block (libtorch's caching host allocator keeps the block until the copy has run).
// Returns a new at::Tensor* for the caller to own, or NULL when libtorch threw.
at::Tensor* remind_upload_pinned(const at::Tensor* t, int index) {
  try {
    auto dev = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(index));
    return new at::Tensor(t->pin_memory().to(dev, /*non_blocking=*/true));
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"
