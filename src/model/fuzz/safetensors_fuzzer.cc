// libFuzzer target: SafetensorsFile::Parse on arbitrary bytes, then every tensor read back.
#include <cstddef>
#include <cstdint>

#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = kiln::SafetensorsFile::Parse(nullptr, data, size, "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const auto& [name, info] : (*file)->tensors()) {
    auto tensor = (*file)->GetTensor(name);
    if (tensor.ok() && tensor->numel() > 0) {
      float sink[4];
      const int64_t n = tensor->numel() < 4 ? tensor->numel() : 4;
      tensor->ToFloat(tensor->numel() - n, n, sink);  // the last elements: bounds
    }
    (void)kiln::ReadSafetensorsInt32(**file, name);
  }
  return 0;
}
