#include "model/gguf.h"

#include <cstring>
#include <limits>

#include "model/mapped_file.h"

namespace kiln {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxDims = 4;

// A bounds-checked little-endian reader over the file image.
class Reader final {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  bool Read(T* out) {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool ReadString(std::string* out) {
    uint64_t len = 0;
    if (!Read(&len) || len > remaining()) return false;
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool IsIntegerType(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kInt8 || t == GgufType::kUint16 ||
         t == GgufType::kInt16 || t == GgufType::kUint32 || t == GgufType::kInt32 ||
         t == GgufType::kUint64 || t == GgufType::kInt64 || t == GgufType::kBool;
}

// Reads one scalar of type t into (i, u, f). Returns false on truncation.
bool ReadScalar(Reader& r, GgufType t, int64_t* i, uint64_t* u, double* f) {
  switch (t) {
    case GgufType::kUint8: {
      uint8_t v;
      if (!r.Read(&v)) return false;
      *u = v;
      *i = v;
      return true;
    }
    case GgufType::kBool: {
      uint8_t v;
      if (!r.Read(&v)) return false;
      *u = v != 0;
      *i = v != 0;
      return true;
    }
    case GgufType::kInt8: {
      int8_t v;
      if (!r.Read(&v)) return false;
      *i = v;
      *u = static_cast<uint64_t>(v);
      return true;
    }
    case GgufType::kUint16: {
      uint16_t v;
      if (!r.Read(&v)) return false;
      *u = v;
      *i = v;
      return true;
    }
    case GgufType::kInt16: {
      int16_t v;
      if (!r.Read(&v)) return false;
      *i = v;
      *u = static_cast<uint64_t>(v);
      return true;
    }
    case GgufType::kUint32: {
      uint32_t v;
      if (!r.Read(&v)) return false;
      *u = v;
      *i = v;
      return true;
    }
    case GgufType::kInt32: {
      int32_t v;
      if (!r.Read(&v)) return false;
      *i = v;
      *u = static_cast<uint64_t>(v);
      return true;
    }
    case GgufType::kUint64: {
      uint64_t v;
      if (!r.Read(&v)) return false;
      *u = v;
      *i = static_cast<int64_t>(v);
      return true;
    }
    case GgufType::kInt64: {
      int64_t v;
      if (!r.Read(&v)) return false;
      *i = v;
      *u = static_cast<uint64_t>(v);
      return true;
    }
    case GgufType::kFloat32: {
      float v;
      if (!r.Read(&v)) return false;
      *f = v;
      return true;
    }
    case GgufType::kFloat64: {
      double v;
      if (!r.Read(&v)) return false;
      *f = v;
      return true;
    }
    default:
      return false;
  }
}

Status ReadValue(Reader& r, GgufType type, GgufValue* value, const std::string& key) {
  auto fail = [&](const std::string& what) {
    return Status::DataLoss("metadata '" + key + "': " + what);
  };
  value->type = type;
  if (type == GgufType::kString) {
    if (!r.ReadString(&value->s)) return fail("truncated string");
    return Status::Ok();
  }
  if (type == GgufType::kArray) {
    uint32_t et = 0;
    uint64_t count = 0;
    if (!r.Read(&et) || !r.Read(&count)) return fail("truncated array header");
    value->element_type = static_cast<GgufType>(et);
    if (value->element_type == GgufType::kArray)
      return Status::Unimplemented("metadata '" + key + "': nested arrays");
    if (value->element_type == GgufType::kString) {
      if (count > r.remaining() / 8)
        return fail("array count " + std::to_string(count) + " past end of file");
      value->strings.resize(count);
      for (uint64_t k = 0; k < count; ++k)
        if (!r.ReadString(&value->strings[k])) return fail("truncated string array");
      return Status::Ok();
    }
    const size_t es = ScalarSize(value->element_type);
    if (es == 0) return fail("unknown array element type " + std::to_string(et));
    if (count > r.remaining() / es)
      return fail("array count " + std::to_string(count) + " past end of file");
    const bool is_float =
        value->element_type == GgufType::kFloat32 || value->element_type == GgufType::kFloat64;
    if (is_float)
      value->floats.resize(count);
    else
      value->ints.resize(count);
    for (uint64_t k = 0; k < count; ++k) {
      int64_t i = 0;
      uint64_t u = 0;
      double f = 0;
      if (!ReadScalar(r, value->element_type, &i, &u, &f)) return fail("truncated array");
      if (is_float)
        value->floats[k] = f;
      else
        value->ints[k] = i;
    }
    return Status::Ok();
  }
  if (ScalarSize(type) == 0)
    return fail("unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  if (!ReadScalar(r, type, &value->i, &value->u, &value->f)) return fail("truncated value");
  return Status::Ok();
}

// Bytes of a tensor of `type` with `numel` elements whose rows are `ne0` long; 0 if unknown type
// or not a whole number of blocks.
uint64_t GgmlTensorBytes(GgmlType type, uint64_t ne0, uint64_t numel) {
  uint64_t block = 1, block_bytes = 0;
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kI32:
      block_bytes = 4;
      break;
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kI16:
      block_bytes = 2;
      break;
    case GgmlType::kI8:
      block_bytes = 1;
      break;
    case GgmlType::kI64:
    case GgmlType::kF64:
      block_bytes = 8;
      break;
    case GgmlType::kQ4_0:
      block = 32;
      block_bytes = 18;
      break;
    case GgmlType::kQ4_1:
      block = 32;
      block_bytes = 20;
      break;
    case GgmlType::kQ5_0:
      block = 32;
      block_bytes = 22;
      break;
    case GgmlType::kQ5_1:
      block = 32;
      block_bytes = 24;
      break;
    case GgmlType::kQ8_0:
      block = 32;
      block_bytes = 34;
      break;
    case GgmlType::kQ8_1:
      block = 32;
      block_bytes = 36;
      break;
    case GgmlType::kQ2_K:
      block = 256;
      block_bytes = 84;
      break;
    case GgmlType::kQ3_K:
      block = 256;
      block_bytes = 110;
      break;
    case GgmlType::kQ4_K:
      block = 256;
      block_bytes = 144;
      break;
    case GgmlType::kQ5_K:
      block = 256;
      block_bytes = 176;
      break;
    case GgmlType::kQ6_K:
      block = 256;
      block_bytes = 210;
      break;
    case GgmlType::kQ8_K:
      block = 256;
      block_bytes = 292;
      break;
    default:
      return 0;
  }
  if (ne0 % block != 0) return 0;
  return numel / block * block_bytes;
}

}  // namespace

bool GgufValue::is_integer() const { return IsIntegerType(type); }

StatusOr<std::shared_ptr<const GgufFile>> GgufFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  const uint8_t* data = mapped->data();
  const size_t size = mapped->size();
  return Parse(std::move(mapped), data, size, path);
}

StatusOr<std::shared_ptr<const GgufFile>> GgufFile::Parse(std::shared_ptr<const void> keep_alive,
                                                          const uint8_t* data, size_t size,
                                                          std::string name) {
  auto fail = [&](const std::string& what) { return Status::DataLoss(name + ": " + what); };
  Reader r(data, size);
  uint32_t magic = 0, version = 0;
  uint64_t tensor_count = 0, kv_count = 0;
  if (!r.Read(&magic) || magic != kGgufMagic) return fail("not a GGUF file (bad magic)");
  if (!r.Read(&version)) return fail("truncated header");
  if (version != 2 && version != 3)
    return fail("unsupported GGUF version " + std::to_string(version));
  if (!r.Read(&tensor_count) || !r.Read(&kv_count)) return fail("truncated header");
  // Each kv takes at least 12 bytes, each tensor info at least 24: reject impossible counts early.
  if (kv_count > r.remaining() / 12)
    return fail("metadata count " + std::to_string(kv_count) + " past end of file");
  if (tensor_count > r.remaining() / 24)
    return fail("tensor count " + std::to_string(tensor_count) + " past end of file");

  std::shared_ptr<GgufFile> file(new GgufFile());
  file->name_ = name;
  file->keep_alive_ = std::move(keep_alive);
  file->version_ = version;
  for (uint64_t k = 0; k < kv_count; ++k) {
    std::string key;
    uint32_t type = 0;
    if (!r.ReadString(&key) || !r.Read(&type)) return fail("truncated metadata key");
    GgufValue value;
    Status s = ReadValue(r, static_cast<GgufType>(type), &value, key);
    if (!s.ok()) return s.WithContext(file->name_);
    file->metadata_[key] = std::move(value);
  }
  if (const GgufValue* a = file->Find("general.alignment")) {
    if (!a->is_integer() || a->u == 0 || a->u > 65536 || (a->u & (a->u - 1)) != 0)
      return fail("general.alignment must be a power of two <= 65536");
    file->alignment_ = a->u;
  }
  file->tensors_.reserve(tensor_count);
  for (uint64_t k = 0; k < tensor_count; ++k) {
    GgufTensorInfo info;
    uint32_t n_dims = 0, type = 0;
    if (!r.ReadString(&info.name) || !r.Read(&n_dims)) return fail("truncated tensor info");
    if (n_dims == 0 || n_dims > kMaxDims)
      return fail("tensor '" + info.name + "': bad dimension count " + std::to_string(n_dims));
    // The product of the non-zero dims is bounded too, so that no ordering of the
    // multiplication can overflow (a zero dim must not hide two huge ones).
    uint64_t numel = 1, nonzero_product = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      if (!r.Read(&dim)) return fail("truncated tensor info");
      if (dim > (uint64_t{1} << 40) || (dim != 0 && nonzero_product > (uint64_t{1} << 50) / dim))
        return fail("tensor '" + info.name + "': absurd shape");
      numel *= dim;
      if (dim != 0) nonzero_product *= dim;
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    if (!r.Read(&type) || !r.Read(&info.offset)) return fail("truncated tensor info");
    info.type = static_cast<GgmlType>(type);
    info.size_bytes = GgmlTensorBytes(info.type, static_cast<uint64_t>(info.dims[0]), numel);
    if (info.size_bytes == 0 && numel != 0)
      return fail("tensor '" + info.name + "': unsupported type " + std::to_string(type) +
                  " or row length");
    if (info.offset % file->alignment_ != 0)
      return fail("tensor '" + info.name + "': misaligned offset");
    if (file->tensor_index_.count(info.name)) return fail("duplicate tensor '" + info.name + "'");
    file->tensor_index_[info.name] = file->tensors_.size();
    file->tensors_.push_back(std::move(info));
  }
  const uint64_t data_start =
      (r.pos() + file->alignment_ - 1) / file->alignment_ * file->alignment_;
  if (data_start > size && !file->tensors_.empty()) return fail("data section past end of file");
  const uint64_t data_size = data_start <= size ? size - data_start : 0;
  for (GgufTensorInfo& info : file->tensors_) {
    if (info.offset > data_size || info.size_bytes > data_size - info.offset)
      return fail("tensor '" + info.name + "': data [" + std::to_string(info.offset) + ", +" +
                  std::to_string(info.size_bytes) + ") outside the file");
    info.data = data + data_start + info.offset;
  }
  return std::shared_ptr<const GgufFile>(std::move(file));
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
Status Missing(const std::string& file, const std::string& key) {
  return Status::NotFound(file + ": no metadata key '" + key + "'");
}
Status WrongType(const std::string& file, const std::string& key, const char* want) {
  return Status::InvalidArgument(file + ": metadata '" + key + "' is not " + want);
}
}  // namespace

StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (v->type != GgufType::kString) return WrongType(name_, key, "a string");
  return v->s;
}

StatusOr<int64_t> GgufFile::GetInt(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (!v->is_integer()) return WrongType(name_, key, "an integer");
  return v->i;
}

StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  return WrongType(name_, key, "a number");
}

StatusOr<bool> GgufFile::GetBool(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (!v->is_integer()) return WrongType(name_, key, "a bool");
  return v->u != 0;
}

StatusOr<std::vector<std::string>> GgufFile::GetStringArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (!v->is_array() || v->element_type != GgufType::kString)
    return WrongType(name_, key, "a string array");
  return v->strings;
}

StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (!v->is_array() || !IsIntegerType(v->element_type))
    return WrongType(name_, key, "an integer array");
  return v->ints;
}

StatusOr<std::vector<double>> GgufFile::GetFloatArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) return Missing(name_, key);
  if (!v->is_array() || v->element_type == GgufType::kString)
    return WrongType(name_, key, "a numeric array");
  if (!v->floats.empty() || v->ints.empty()) return v->floats;
  return std::vector<double>(v->ints.begin(), v->ints.end());
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& tensor_name) const {
  auto it = tensor_index_.find(tensor_name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

StatusOr<Tensor> GgufFile::GetTensor(const std::string& tensor_name) const {
  const GgufTensorInfo* info = FindTensor(tensor_name);
  if (info == nullptr) return Status::NotFound(name_ + ": no tensor '" + tensor_name + "'");
  Tensor t;
  t.shape.assign(info->dims.rbegin(), info->dims.rend());
  switch (info->type) {
    case GgmlType::kF32:
      t.dtype = DType::kF32;
      break;
    case GgmlType::kF16:
      t.dtype = DType::kF16;
      break;
    case GgmlType::kBF16:
      t.dtype = DType::kBF16;
      break;
    case GgmlType::kQ8_0: {
      const int64_t n = t.numel();
      auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* block = info->data + b * 34;
        uint16_t d_bits;
        std::memcpy(&d_bits, block, 2);
        const float d = HalfToFloat(d_bits);
        const int8_t* qs = reinterpret_cast<const int8_t*>(block + 2);
        for (int k = 0; k < 32; ++k) (*buffer)[b * 32 + k] = d * static_cast<float>(qs[k]);
      }
      t.dtype = DType::kF32;
      t.data = buffer->data();
      t.size_bytes = static_cast<size_t>(n) * sizeof(float);
      t.storage = std::move(buffer);
      return t;
    }
    default:
      return Status::Unimplemented(name_ + ": tensor '" + tensor_name + "' has ggml type " +
                                   std::to_string(static_cast<uint32_t>(info->type)) +
                                   " (supported: F32, F16, BF16, Q8_0)");
  }
  t.data = info->data;
  t.size_bytes = info->size_bytes;
  t.storage = keep_alive_;
  return t;
}

void UnpermuteRotaryRows(const float* in, int num_heads, int head_dim, int64_t cols, float* out) {
  const int half = head_dim / 2;
  for (int h = 0; h < num_heads; ++h)
    for (int i = 0; i < half; ++i)
      for (int j = 0; j < 2; ++j) {
        const int64_t src = static_cast<int64_t>(h) * head_dim + 2 * i + j;
        const int64_t dst = static_cast<int64_t>(h) * head_dim + j * half + i;
        std::memcpy(out + dst * cols, in + src * cols, static_cast<size_t>(cols) * sizeof(float));
      }
}

}  // namespace kiln
