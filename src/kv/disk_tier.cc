#include "kv/disk_tier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace kiln {
namespace {

namespace fs = std::filesystem;

Status Errno(const std::string& what) {
  return Status::IOError(what + ": " + std::strerror(errno));
}

// Writes, renames and deletes a small file in `dir`: a directory that exists but cannot hold
// records (permissions, a read-only or full file system) fails here, at startup, and not at every
// Put while serving.
Status ProbeWritable(const std::string& dir) {
  const std::string probe = dir + "/.kiln-write-probe." + std::to_string(::getpid());
  const std::string renamed = probe + ".renamed";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("disk tier: " + dir + " is not writable (creating a file)");
  const char byte = 'k';
  const bool wrote = ::write(fd, &byte, 1) == 1;
  Status status = wrote ? Status::Ok() : Errno("disk tier: " + dir + " is not writable (writing)");
  if (::close(fd) != 0 && status.ok()) {
    status = Errno("disk tier: " + dir + " is not writable (closing a file)");
  }
  if (status.ok() && ::rename(probe.c_str(), renamed.c_str()) != 0) {
    status = Errno("disk tier: cannot rename files in " + dir);
  }
  const std::string& last = status.ok() ? renamed : probe;
  if (::unlink(last.c_str()) != 0 && status.ok()) {
    status = Errno("disk tier: cannot delete files in " + dir);
  }
  return status;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

bool ParseBlockHashHex(std::string_view hex, BlockHash* key) {
  if (hex.size() != 32) return false;
  uint64_t parts[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const int d = HexDigit(hex[i]);
    if (d < 0) return false;
    parts[i / 16] = (parts[i / 16] << 4) | static_cast<uint64_t>(d);
  }
  key->hi = parts[0];
  key->lo = parts[1];
  return true;
}

Status DiskTierOptions::Validate() const {
  if (dir.empty()) return Status::InvalidArgument("disk tier: dir is empty");
  if (capacity_bytes <= 0) {
    return Status::InvalidArgument("disk tier: capacity_bytes must be > 0, got " +
                                   std::to_string(capacity_bytes));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<DiskTier>> DiskTier::Open(const DiskTierOptions& options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Status::IOError("disk tier: cannot create " + options.dir + ": " + ec.message());
  if (!fs::is_directory(options.dir, ec)) {
    return Status::InvalidArgument("disk tier: " + options.dir + " is not a directory");
  }
  KILN_RETURN_IF_ERROR(ProbeWritable(options.dir));
  std::unique_ptr<DiskTier> tier(new DiskTier(options));
  struct Found {
    BlockHash key;
    int64_t size;
    fs::file_time_type mtime;
  };
  std::vector<Found> found;
  for (const fs::directory_entry& e : fs::directory_iterator(options.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() == 36 && name.ends_with(".tmp")) {
      fs::remove(e.path(), ec);  // a write cut short by a crash
      continue;
    }
    BlockHash key;
    if (name.size() != 36 || !name.ends_with(".kvb") ||
        !ParseBlockHashHex(std::string_view(name).substr(0, 32), &key)) {
      continue;  // not ours
    }
    std::error_code ec2;
    const auto size = e.file_size(ec2);
    const auto mtime = e.last_write_time(ec2);
    if (ec2) continue;
    found.push_back({key, static_cast<int64_t>(size), mtime});
  }
  if (ec) return Status::IOError("disk tier: cannot list " + options.dir + ": " + ec.message());
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  std::lock_guard<std::mutex> lock(tier->mu_);
  for (const Found& f : found) {
    tier->EvictFor(f.size);
    tier->lru_.push_back(f.key);
    tier->index_[f.key] = Entry{f.size, std::prev(tier->lru_.end())};
    tier->used_bytes_ += f.size;
  }
  return tier;
}

std::string DiskTier::PathOf(const BlockHash& key) const {
  return options_.dir + "/" + key.Hex() + ".kvb";
}

void DiskTier::EraseLocked(const BlockHash& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  used_bytes_ -= it->second.size_bytes;
  lru_.erase(it->second.lru);
  index_.erase(it);
}

void DiskTier::EvictFor(int64_t incoming) {
  while (!lru_.empty() && used_bytes_ + incoming > options_.capacity_bytes) {
    const BlockHash victim = lru_.front();
    std::error_code ec;
    fs::remove(PathOf(victim), ec);
    EraseLocked(victim);
  }
}

StatusOr<bool> DiskTier::Put(const BlockHash& key, std::span<const uint8_t> record) {
  const int64_t size = static_cast<int64_t>(record.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key) != 0) return false;  // already stored (same content by key)
    if (size > options_.capacity_bytes) {
      return Status::ResourceExhausted("disk tier: record larger than the tier");
    }
    EvictFor(size);
  }
  const std::string path = PathOf(key);
  const std::string tmp = options_.dir + "/" + key.Hex() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("disk tier: open " + tmp);
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = ::write(fd, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = Errno("disk tier: write " + tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Errno("disk tier: finish " + path);
    ::unlink(tmp.c_str());
    return s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  EvictFor(size);
  lru_.push_back(key);
  index_[key] = Entry{size, std::prev(lru_.end())};
  used_bytes_ += size;
  return true;
}

Status DiskTier::Get(const BlockHash& key, std::vector<uint8_t>* record) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) return Status::NotFound("disk tier: no record");
    lru_.splice(lru_.end(), lru_, it->second.lru);
  }
  const std::string path = PathOf(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::lock_guard<std::mutex> lock(mu_);
    EraseLocked(key);  // deleted behind our back
    return Status::NotFound("disk tier: " + path + " is gone");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = Errno("disk tier: stat " + path);
    ::close(fd);
    return s;
  }
  record->resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < record->size()) {
    const ssize_t n = ::read(fd, record->data() + done, record->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  record->resize(done);
  ::futimens(fd, nullptr);  // the LRU order after a restart follows mtime
  ::close(fd);
  return Status::Ok();
}

void DiskTier::Remove(const BlockHash& key) {
  std::error_code ec;
  fs::remove(PathOf(key), ec);
  std::lock_guard<std::mutex> lock(mu_);
  EraseLocked(key);
}

bool DiskTier::MayContain(const BlockHash& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.count(key) != 0;
}

int64_t DiskTier::num_records() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(index_.size());
}

void DiskTier::FillStats(TierStats* stats) const {
  std::lock_guard<std::mutex> lock(mu_);
  stats->enabled = true;
  stats->capacity_bytes = options_.capacity_bytes;
  stats->used_bytes = used_bytes_;
}

}  // namespace kiln
