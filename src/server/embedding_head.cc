#include "server/embedding_head.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kiln::server {
namespace {

using nlohmann::json;

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    f = mant ? NAN : INFINITY;
  } else {
    f = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

// A tensor of the file as float32 with its shape.
Status ReadTensor(const json& header, const std::string& data, const std::string& name,
                  std::vector<int64_t>* shape, std::vector<float>* out) {
  const auto it = header.find(name);
  if (it == header.end() || !it->is_object()) {
    return Status::InvalidArgument("embedding head: tensor '" + name + "' not in the file");
  }
  const std::string dtype = it->value("dtype", "");
  const auto& offsets = (*it)["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !(*it)["shape"].is_array()) {
    return Status::DataLoss("embedding head: tensor '" + name + "' has a malformed entry");
  }
  shape->clear();
  int64_t count = 1;
  for (const auto& d : (*it)["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0) {
      return Status::DataLoss("embedding head: tensor '" + name + "' has a bad shape");
    }
    shape->push_back(d.get<int64_t>());
    count *= d.get<int64_t>();
  }
  const size_t elem = dtype == "F32" ? 4 : (dtype == "F16" || dtype == "BF16") ? 2 : 0;
  if (elem == 0) {
    return Status::InvalidArgument("embedding head: tensor '" + name + "' has dtype '" + dtype +
                                   "' (F32, F16 or BF16 expected)");
  }
  const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
  if (end < begin || end > data.size() || end - begin != static_cast<uint64_t>(count) * elem) {
    return Status::DataLoss("embedding head: tensor '" + name + "' lies outside the file");
  }
  out->resize(static_cast<size_t>(count));
  const char* p = data.data() + begin;
  for (int64_t i = 0; i < count; ++i) {
    if (elem == 4) {
      std::memcpy(&(*out)[i], p + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      if (dtype == "BF16") {
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(&(*out)[i], &bits, 4);
      } else {
        (*out)[i] = HalfToFloat(h);
      }
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<EmbeddingHead>> EmbeddingHead::Load(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(std::string file, ReadFile(path));
  if (file.size() < 8) return Status::DataLoss("embedding head: '" + path + "' is too short");
  uint64_t header_size = 0;
  std::memcpy(&header_size, file.data(), 8);
  if (header_size > file.size() - 8) {
    return Status::DataLoss("embedding head: '" + path + "' has a truncated header");
  }
  const json header = json::parse(
      file.begin() + 8, file.begin() + 8 + static_cast<ptrdiff_t>(header_size), nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return Status::DataLoss("embedding head: '" + path + "' has a malformed header");
  }
  const std::string data = file.substr(8 + header_size);

  std::string desc_path = path;
  const std::string ext = ".safetensors";
  if (desc_path.size() > ext.size() &&
      desc_path.compare(desc_path.size() - ext.size(), ext.size(), ext) == 0) {
    desc_path.resize(desc_path.size() - ext.size());
  }
  desc_path += ".json";
  KILN_ASSIGN_OR_RETURN(std::string desc_text, ReadFile(desc_path));
  const json desc = json::parse(desc_text, nullptr, false);
  if (desc.is_discarded() || !desc.is_object() || !desc.contains("layers") ||
      !desc["layers"].is_array() || desc["layers"].empty()) {
    return Status::InvalidArgument("embedding head: '" + desc_path +
                                   "' must be an object with a non-empty 'layers' array");
  }
  std::unique_ptr<EmbeddingHead> head(new EmbeddingHead());
  head->activation_ = desc.value("activation", "identity");
  if (head->activation_ != "relu" && head->activation_ != "gelu" && head->activation_ != "tanh" &&
      head->activation_ != "silu" && head->activation_ != "identity") {
    return Status::InvalidArgument("embedding head: unknown activation '" + head->activation_ +
                                   "'");
  }
  for (const auto& l : desc["layers"]) {
    if (!l.is_object() || !l.contains("weight") || !l["weight"].is_string()) {
      return Status::InvalidArgument("embedding head: every layer needs a 'weight' tensor name");
    }
    Layer layer;
    std::vector<int64_t> shape;
    KILN_RETURN_IF_ERROR(ReadTensor(header, data, l["weight"], &shape, &layer.weight));
    if (shape.size() != 2) {
      return Status::InvalidArgument("embedding head: weight '" + l["weight"].get<std::string>() +
                                     "' must be 2-D [out, in]");
    }
    layer.out = static_cast<int>(shape[0]);
    layer.in = static_cast<int>(shape[1]);
    if (l.contains("bias") && l["bias"].is_string()) {
      KILN_RETURN_IF_ERROR(ReadTensor(header, data, l["bias"], &shape, &layer.bias));
      if (shape.size() != 1 || shape[0] != layer.out) {
        return Status::InvalidArgument("embedding head: bias '" + l["bias"].get<std::string>() +
                                       "' must have " + std::to_string(layer.out) + " values");
      }
    }
    if (!head->layers_.empty() && head->layers_.back().out != layer.in) {
      return Status::InvalidArgument(
          "embedding head: layer shapes do not chain (" + std::to_string(head->layers_.back().out) +
          " outputs feed a layer with " + std::to_string(layer.in) + " inputs)");
    }
    head->layers_.push_back(std::move(layer));
  }
  return head;
}

std::vector<float> EmbeddingHead::Apply(std::span<const float> x) const {
  std::vector<float> cur(x.begin(), x.end());
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& l = layers_[li];
    std::vector<float> next(static_cast<size_t>(l.out));
    for (int o = 0; o < l.out; ++o) {
      double acc = l.bias.empty() ? 0.0 : l.bias[o];
      const float* w = &l.weight[static_cast<size_t>(o) * l.in];
      for (int i = 0; i < l.in && i < static_cast<int>(cur.size()); ++i)
        acc += double{w[i]} * cur[i];
      next[o] = static_cast<float>(acc);
    }
    if (li + 1 < layers_.size()) {
      for (float& v : next) {
        if (activation_ == "relu") {
          v = std::max(v, 0.0f);
        } else if (activation_ == "gelu") {
          v = 0.5f * v * (1.0f + std::erf(v / std::sqrt(2.0f)));
        } else if (activation_ == "tanh") {
          v = std::tanh(v);
        } else if (activation_ == "silu") {
          v = v / (1.0f + std::exp(-v));
        }
      }
    }
    cur = std::move(next);
  }
  return cur;
}

}  // namespace kiln::server
