// SafetensorsFile: a parsed .safetensors file (8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data).
// Parsing validates everything before any tensor is handed out: the header length against the
// file size, the JSON, every dtype (known names only), every shape (non-negative, no overflow),
// every offset pair (begin <= end <= data size, end - begin == numel * element size). Overlapping
// tensors are allowed (the format does not forbid them). Tensors are views into the mmap.
//
// SafetensorsModel wraps one file or a sharded set (model.safetensors.index.json) behind one
// name → tensor lookup.
//
// Thread-safety: immutable after Open/Parse.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"
#include "model/mapped_file.h"
#include "model/weights.h"

namespace kiln {

struct SafetensorsTensorInfo {
  std::string dtype;        // as written: "F32", "BF16", "I32", ...
  size_t element_size = 0;  // bytes per element of dtype
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;
};

class SafetensorsFile final {
 public:
  static StatusOr<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);
  // Parses an in-memory image; `keep_alive` owns `data` (may be null when the caller keeps it).
  static StatusOr<std::shared_ptr<const SafetensorsFile>> Parse(
      std::shared_ptr<const void> keep_alive, const uint8_t* data, size_t size, std::string name);

  const std::string& name() const { return name_; }
  const std::map<std::string, SafetensorsTensorInfo>& tensors() const { return tensors_; }
  bool Has(const std::string& tensor_name) const { return tensors_.count(tensor_name) > 0; }
  // An F32/F16/BF16/F8_E4M3/I8 tensor as a Tensor view; other dtypes → kUnimplemented.
  StatusOr<Tensor> GetTensor(const std::string& tensor_name) const;
  // The raw bytes of any tensor, with its info (for I32/I64 tensors in reference files).
  StatusOr<std::pair<const SafetensorsTensorInfo*, const uint8_t*>> GetRaw(
      const std::string& tensor_name) const;

 private:
  SafetensorsFile() = default;
  std::string name_;
  std::shared_ptr<const void> keep_alive_;
  const uint8_t* data_section_ = nullptr;
  std::map<std::string, SafetensorsTensorInfo> tensors_;
};

// Convenience: reads a whole tensor converted to float32 / int32 (tests, reference files).
StatusOr<std::vector<float>> ReadSafetensorsFloat(const SafetensorsFile& file,
                                                  const std::string& tensor_name);
StatusOr<std::vector<int32_t>> ReadSafetensorsInt32(const SafetensorsFile& file,
                                                    const std::string& tensor_name);

// The tensors of an HF checkpoint directory: model.safetensors, or the shards named by
// model.safetensors.index.json ("weight_map": {tensor: shard file}).
class SafetensorsModel final {
 public:
  static StatusOr<SafetensorsModel> Open(const std::string& directory);
  bool Has(const std::string& tensor_name) const { return index_.count(tensor_name) > 0; }
  StatusOr<Tensor> GetTensor(const std::string& tensor_name) const;
  size_t num_tensors() const { return index_.size(); }

 private:
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t> index_;  // tensor name → files_ index
};

}  // namespace kiln
