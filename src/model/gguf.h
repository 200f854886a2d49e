// GgufFile: a parsed GGUF (v2/v3) file: header, every metadata key with its typed value (scalars,
// strings, and arrays of scalars or strings — all kept, e.g. tokenizer.ggml.tokens / scores /
// merges), tensor infos, alignment, and views of the tensor data inside the mmap.
//
// Parsing bounds-checks every read (counts, string lengths, dimensions, offsets, alignment) and
// returns kDataLoss naming the problem; nothing is trusted. Array counts are checked against the
// bytes left before anything is allocated. Nested arrays are kUnimplemented.
//
// Tensor dims are stored as GGUF writes them (dims[0] = the fastest-varying, ggml's ne0);
// GetTensor() returns a kiln Tensor in row-major HF order (shape reversed: [ne1, ne0] for a
// matrix), F32/F16/BF16 as views, Q8_0 dequantized to F32.
//
// Thread-safety: immutable after Open/Parse.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// ggml tensor types kiln knows the size of (the ones it can load: F32, F16, BF16, Q8_0).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

// One metadata value. Scalars: integers in `i` (signed types) or `u` (unsigned, bool), floats in
// `f`, strings in `s`. Arrays (type == kArray) keep element_type and the elements in exactly one of
// ints (any integer or bool element type, as int64), floats (float32/64), strings.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType element_type = GgufType::kUint8;  // arrays only
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  bool is_integer() const;  // any integer scalar type (bool included)
  bool is_float() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
  bool is_array() const { return type == GgufType::kArray; }
  size_t array_size() const { return ints.size() + floats.size() + strings.size(); }
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] fastest-varying
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t size_bytes = 0;
  const uint8_t* data = nullptr;
};

class GgufFile final {
 public:
  static StatusOr<std::shared_ptr<const GgufFile>> Open(const std::string& path);
  static StatusOr<std::shared_ptr<const GgufFile>> Parse(std::shared_ptr<const void> keep_alive,
                                                         const uint8_t* data, size_t size,
                                                         std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* Find(const std::string& key) const;
  // Typed getters: kNotFound when absent, kInvalidArgument when of another type.
  StatusOr<std::string> GetString(const std::string& key) const;
  StatusOr<int64_t> GetInt(const std::string& key) const;   // any integer type
  StatusOr<double> GetFloat(const std::string& key) const;  // any numeric type
  StatusOr<bool> GetBool(const std::string& key) const;
  StatusOr<std::vector<std::string>> GetStringArray(const std::string& key) const;
  StatusOr<std::vector<int64_t>> GetIntArray(const std::string& key) const;
  StatusOr<std::vector<double>> GetFloatArray(const std::string& key) const;  // float or int elems

  const GgufTensorInfo* FindTensor(const std::string& tensor_name) const;
  // Row-major kiln Tensor (shape = reversed dims). F32/F16/BF16 views; Q8_0 → owned F32.
  StatusOr<Tensor> GetTensor(const std::string& tensor_name) const;

 private:
  GgufFile() = default;
  std::string name_;
  std::shared_ptr<const void> keep_alive_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds the ModelConfig of a GGUF model (general.architecture llama | qwen2; others are
// kUnimplemented naming the architecture).
StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& file);

// Loads the weights of a GGUF model into HF layout (llama q/k rows un-permuted).
StatusOr<LlamaWeights> LoadGgufWeights(const GgufFile& file, const ModelConfig& config);

// Undoes llama.cpp's rotary permutation of q/k projection rows: GGUF row h*D + 2i + j holds HF row
// h*D + j*D/2 + i (for head h, i < D/2, j in {0, 1}). `rows` = num_heads * head_dim rows of `cols`
// floats each.
void UnpermuteRotaryRows(const float* in, int num_heads, int head_dim, int64_t cols, float* out);

}  // namespace kiln
