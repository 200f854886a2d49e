// EmbeddingHead: an optional projection applied to pooled embeddings (POST /v1/embeddings): a stack
// of linear layers y = W x + b (W is [out, in], row-major, like torch.nn.Linear) with one
// activation between consecutive layers (none after the last). Loaded from a safetensors file and
// a JSON description next to it (the same path with ".json" instead of ".safetensors"):
//
//   {"layers": [{"weight": "0.weight", "bias": "0.bias"}, {"weight": "2.weight"}],
//    "activation": "relu" | "gelu" | "tanh" | "silu" | "identity"}
//
// Tensors may be F32, F16 or BF16 (converted to float32 at load). Consecutive shapes must chain.
// Bad files are kDataLoss / kInvalidArgument naming the problem.
//
// Thread-safety: immutable after Load(); Apply() may be called from any number of threads.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::server {

class EmbeddingHead final {
 public:
  static StatusOr<std::unique_ptr<EmbeddingHead>> Load(const std::string& safetensors_path);

  int input_size() const { return layers_.front().in; }
  int output_size() const { return layers_.back().out; }
  // `x` has input_size() values; returns output_size() values.
  std::vector<float> Apply(std::span<const float> x) const;

 private:
  struct Layer {
    int in = 0, out = 0;
    std::vector<float> weight;  // [out, in]
    std::vector<float> bias;    // [out] or empty
  };
  EmbeddingHead() = default;
  std::vector<Layer> layers_;
  std::string activation_;
};

}  // namespace kiln::server
