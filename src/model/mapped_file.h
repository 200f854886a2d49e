// MappedFile: a read-only mmap of a whole file (RAII; unmapped when the last shared_ptr goes), and
// ReadFileToString for small text files (config.json). Neither interprets the bytes.
//
// Thread-safety: a MappedFile is immutable after Open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kiln/status.h"

namespace kiln {

class MappedFile final {
 public:
  // Maps `path` read-only. An empty file maps to size() == 0 and data() == nullptr.
  static StatusOr<std::shared_ptr<const MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Reads a whole (small) file; files over max_size_bytes are an error.
StatusOr<std::string> ReadFileToString(const std::string& path,
                                       size_t max_size_bytes = size_t{64} << 20);

bool FileExists(const std::string& path);
// True when `path` ends with `suffix` (e.g. ".gguf").
bool EndsWith(const std::string& path, const std::string& suffix);
bool IsDirectory(const std::string& path);

}  // namespace kiln
