#include "model/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace kiln {

std::string SafetensorsDTypeName(DType dtype) {
  // kiln's DType names are the safetensors names; GGUF's Q8_0 blocks have none.
  return dtype == DType::kQ8_0 ? "" : std::string(DTypeName(dtype));
}

Status WriteSafetensors(const std::string& path,
                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // Wider elements first (stable otherwise): with the header padded to 8 bytes every tensor then
  // starts at a multiple of its element size, as the reference writer arranges.
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return DTypeSize(a->second.dtype) > DTypeSize(b->second.dtype);
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto* entry : order) {
    const std::string& name = entry->first;
    const Tensor& t = entry->second;
    auto bad = [&](const std::string& what) {
      return Status::InvalidArgument(path + ": tensor '" + name + "' " + what);
    };
    if (name.empty() || name == "__metadata__" || !names.insert(name).second)
      return bad("has an empty, reserved or repeated name");
    const std::string dtype = SafetensorsDTypeName(t.dtype);
    if (dtype.empty()) return bad("has dtype " + std::string(DTypeName(t.dtype)));
    if (t.is_dummy() || t.data == nullptr) return bad("has no data (dummy weights)");
    if (t.size_bytes != static_cast<size_t>(t.numel()) * DTypeSize(t.dtype))
      return bad("has " + std::to_string(t.size_bytes) + " bytes, not numel × element size");
    header[name] = {
        {"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.size_bytes}}};
    offset += t.size_bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::IOError(tmp + ": cannot open for writing");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(text.size() >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto* entry : order)
      out.write(static_cast<const char*>(entry->second.data),
                static_cast<std::streamsize>(entry->second.size_bytes));
    out.close();
    if (!out) return Status::IOError(tmp + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::IOError(path + ": cannot rename " + tmp + " into place");
  }
  return Status::Ok();
}

}  // namespace kiln
