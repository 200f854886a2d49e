#include "model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace kiln {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // 100 MiB, as the reference reader

size_t SafetensorsElementSize(std::string_view dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2")
    return 1;
  return 0;
}

}  // namespace

StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  const uint8_t* data = mapped->data();
  const size_t size = mapped->size();
  return Parse(std::move(mapped), data, size, path);
}

StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Parse(
    std::shared_ptr<const void> keep_alive, const uint8_t* data, size_t size, std::string name) {
  auto fail = [&](const std::string& what) { return Status::DataLoss(name + ": " + what); };
  if (size < 8) return fail("file too small for a safetensors header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeaderBytes)
    return fail("header length " + std::to_string(header_len) + " too large");
  if (header_len > size - 8)
    return fail("header length " + std::to_string(header_len) + " past end of file");
  const std::string_view header(reinterpret_cast<const char*>(data + 8), header_len);
  json j = json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("header is not valid JSON");
  if (!j.is_object()) return fail("header is not a JSON object");

  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->name_ = name;
  file->keep_alive_ = std::move(keep_alive);
  file->data_section_ = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "__metadata__") continue;
    const json& t = it.value();
    auto tfail = [&](const std::string& what) { return fail("tensor '" + key + "': " + what); };
    if (!t.is_object()) return tfail("entry is not an object");
    auto dt = t.find("dtype");
    auto sh = t.find("shape");
    auto off = t.find("data_offsets");
    if (dt == t.end() || !dt->is_string()) return tfail("missing dtype");
    if (sh == t.end() || !sh->is_array()) return tfail("missing shape");
    if (off == t.end() || !off->is_array() || off->size() != 2) return tfail("bad data_offsets");
    SafetensorsTensorInfo info;
    info.dtype = dt->get<std::string>();
    info.element_size = SafetensorsElementSize(info.dtype);
    if (info.element_size == 0) return tfail("unknown dtype '" + info.dtype + "'");
    if (sh->size() > 8) return tfail("too many dimensions");
    // Bound the product of the non-zero dims as well, so a zero dim cannot hide huge ones.
    uint64_t numel = 1, nonzero_product = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) return tfail("shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40) || (dim != 0 && nonzero_product > (uint64_t{1} << 50) / dim))
        return tfail("absurd shape");
      numel *= dim;
      if (dim != 0) nonzero_product *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      return tfail("data_offsets must be non-negative integers");
    info.begin = (*off)[0].get<uint64_t>();
    info.end = (*off)[1].get<uint64_t>();
    if (info.begin > info.end || info.end > data_size)
      return tfail("data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                   ") outside data of " + std::to_string(data_size) + " bytes");
    if (numel > std::numeric_limits<uint64_t>::max() / info.element_size ||
        info.end - info.begin != numel * info.element_size)
      return tfail("byte size " + std::to_string(info.end - info.begin) +
                   " does not match shape and dtype");
    file->tensors_.emplace(key, std::move(info));
  }
  // Tensors must not share bytes (the reference reader refuses overlaps too): two overlapping
  // entries would load as each other's weights.
  std::vector<std::pair<uint64_t, const std::string*>> spans;
  for (const auto& [key, info] : file->tensors_) {
    if (info.end > info.begin) spans.push_back({info.begin, &key});
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    const SafetensorsTensorInfo& prev = file->tensors_.at(*spans[i - 1].second);
    if (spans[i].first < prev.end) {
      return fail("tensors '" + *spans[i - 1].second + "' and '" + *spans[i].second +
                  "' overlap in the data section");
    }
  }
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

StatusOr<std::pair<const SafetensorsTensorInfo*, const uint8_t*>> SafetensorsFile::GetRaw(
    const std::string& tensor_name) const {
  auto it = tensors_.find(tensor_name);
  if (it == tensors_.end()) return Status::NotFound(name_ + ": no tensor '" + tensor_name + "'");
  return std::make_pair(&it->second, data_section_ + it->second.begin);
}

StatusOr<Tensor> SafetensorsFile::GetTensor(const std::string& tensor_name) const {
  KILN_ASSIGN_OR_RETURN(auto raw, GetRaw(tensor_name));
  const SafetensorsTensorInfo& info = *raw.first;
  Tensor t;
  if (info.dtype == "F32") {
    t.dtype = DType::kF32;
  } else if (info.dtype == "F16") {
    t.dtype = DType::kF16;
  } else if (info.dtype == "BF16") {
    t.dtype = DType::kBF16;
  } else if (info.dtype == "F8_E4M3") {
    t.dtype = DType::kF8E4M3;
  } else if (info.dtype == "I8") {
    t.dtype = DType::kI8;
  } else {
    return Status::Unimplemented(name_ + ": tensor '" + tensor_name + "' has dtype " + info.dtype +
                                 " (supported: F32, F16, BF16, F8_E4M3, I8)");
  }
  t.shape = info.shape;
  t.data = raw.second;
  t.size_bytes = info.end - info.begin;
  t.storage = keep_alive_;
  return t;
}

StatusOr<std::vector<float>> ReadSafetensorsFloat(const SafetensorsFile& file,
                                                  const std::string& tensor_name) {
  KILN_ASSIGN_OR_RETURN(Tensor t, file.GetTensor(tensor_name));
  return t.ToFloatVector();
}

StatusOr<std::vector<int32_t>> ReadSafetensorsInt32(const SafetensorsFile& file,
                                                    const std::string& tensor_name) {
  KILN_ASSIGN_OR_RETURN(auto raw, file.GetRaw(tensor_name));
  const SafetensorsTensorInfo& info = *raw.first;
  const size_t n = (info.end - info.begin) / info.element_size;
  std::vector<int32_t> out(n);
  if (info.dtype == "I32") {
    std::memcpy(out.data(), raw.second, n * 4);
  } else if (info.dtype == "I64") {
    for (size_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, raw.second + i * 8, 8);
      out[i] = static_cast<int32_t>(v);
    }
  } else {
    return Status::InvalidArgument(tensor_name + ": dtype " + info.dtype +
                                   " is not an integer type");
  }
  return out;
}

StatusOr<SafetensorsModel> SafetensorsModel::Open(const std::string& directory) {
  SafetensorsModel model;
  const std::string index_path = directory + "/model.safetensors.index.json";
  const std::string single_path = directory + "/model.safetensors";
  if (FileExists(index_path)) {
    KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Status::DataLoss(index_path + ": not a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object())
      return Status::DataLoss(index_path + ": no weight_map object");
    std::map<std::string, size_t> shard_index;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string())
        return Status::DataLoss(index_path + ": weight_map values must be strings");
      const std::string shard = it->get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..")
        return Status::DataLoss(index_path + ": bad shard file name '" + shard + "'");
      auto [sit, inserted] = shard_index.emplace(shard, model.files_.size());
      if (inserted) {
        KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(directory + "/" + shard));
        model.files_.push_back(std::move(file));
      }
      const auto& file = model.files_[sit->second];
      if (!file->Has(it.key()))
        return Status::DataLoss(file->name() + ": tensor '" + it.key() +
                                "' named by index is missing");
      model.index_[it.key()] = sit->second;
    }
  } else if (FileExists(single_path)) {
    KILN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    for (const auto& [name, info] : file->tensors()) model.index_[name] = 0;
    model.files_.push_back(std::move(file));
  } else {
    return Status::NotFound(directory +
                            ": neither model.safetensors nor model.safetensors.index.json");
  }
  return model;
}

StatusOr<Tensor> SafetensorsModel::GetTensor(const std::string& tensor_name) const {
  auto it = index_.find(tensor_name);
  if (it == index_.end()) return Status::NotFound("checkpoint has no tensor '" + tensor_name + "'");
  return files_[it->second]->GetTensor(tensor_name);
}

}  // namespace kiln
