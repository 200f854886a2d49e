// libFuzzer target: config.json / generation_config.json parsing on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/rope.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = kiln::ParseHfConfig(text);
  if (config.ok()) {
    (void)kiln::ApplyGenerationConfig(text, &config.value());
    (void)kiln::ComputeRopeTable(*config);  // every accepted config yields a RoPE table
  }
  return 0;
}
