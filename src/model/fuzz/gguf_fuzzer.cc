// libFuzzer target: GgufFile::Parse on arbitrary bytes, typed metadata getters, config and weights.
#include <cstddef>
#include <cstdint>

#include "model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = kiln::GgufFile::Parse(nullptr, data, size, "fuzz.gguf");
  if (!file.ok()) return 0;
  for (const auto& [key, value] : (*file)->metadata()) {
    (void)(*file)->GetString(key);
    (void)(*file)->GetInt(key);
    (void)(*file)->GetFloatArray(key);
    (void)(*file)->GetStringArray(key);
  }
  for (const auto& info : (*file)->tensors()) {
    auto tensor = (*file)->GetTensor(info.name);
    if (tensor.ok() && tensor->numel() > 0) {
      float sink;
      tensor->ToFloat(tensor->numel() - 1, 1, &sink);
    }
  }
  auto config = kiln::ModelConfigFromGguf(**file);
  if (config.ok()) (void)kiln::LoadGgufWeights(**file, *config);
  return 0;
}
