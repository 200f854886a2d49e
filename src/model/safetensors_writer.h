// WriteSafetensors: writes named tensors as one .safetensors file (the format SafetensorsFile
// reads: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// "__metadata__": {...}}, padded with spaces to a multiple of 8 bytes, then the data back to back,
// wider dtypes first so that every tensor is aligned to its element size). dtypes F32, F16, BF16,
// F8_E4M3, I8; the file appears under `path` only once complete (written to path + ".tmp", then
// renamed).
//
// Not responsible for: naming tensors (callers use HF names), dummy tensors (refused: they have
// no data).
//
// Thread-safety: a pure function of its arguments (and the file system).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

// The safetensors dtype name of a DType ("F32", "F8_E4M3", ...); "" for one it cannot store.
std::string SafetensorsDTypeName(DType dtype);

Status WriteSafetensors(const std::string& path,
                        const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace kiln
