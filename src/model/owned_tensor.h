// OwnedTensor: a Tensor whose data is a vector it owns (through Tensor::storage), for weights
// computed at load time (quantized, dequantized) rather than mapped from a file.
//
// Thread-safety: the returned tensor is immutable; copies share the vector.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "model/weights.h"

namespace kiln {

// `values` become the tensor's row-major data; T's size must be DTypeSize(dtype).
template <typename T>
Tensor OwnedTensor(DType dtype, std::vector<int64_t> shape, std::vector<T> values) {
  auto storage = std::make_shared<std::vector<T>>(std::move(values));
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = storage->data();
  t.size_bytes = storage->size() * sizeof(T);
  t.storage = std::shared_ptr<const void>(storage, storage->data());
  return t;
}

}  // namespace kiln
