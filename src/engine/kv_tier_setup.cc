#include "engine/kv_tier_setup.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/logging.h"
#include "kv/block_hash.h"
#include "kv/disk_tier.h"
#include "kv/redis_tier.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// A cheap fingerprint of the checkpoint's files: per regular file (sorted by name) its name, size
// and 4 KiB read at 8 evenly spaced offsets, hashed. Two checkpoints of one architecture (e.g. two
// fine-tunes in directories of the same name) differ in it, so their KV never mixes.
std::string WeightsFingerprint(const std::string& path) {
  std::vector<fs::path> files;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
      if (e.is_regular_file(ec)) files.push_back(e.path());
    }
  } else {
    files.push_back(path);
  }
  std::sort(files.begin(), files.end());
  std::string acc;
  std::vector<char> buf(4096);
  for (const fs::path& f : files) {
    const uintmax_t size = fs::file_size(f, ec);
    if (ec) continue;
    acc += f.filename().string() + ":" + std::to_string(size) + ";";
    std::ifstream in(f, std::ios::binary);
    for (int k = 0; k < 8 && in; ++k) {
      in.seekg(static_cast<std::streamoff>(size / 8 * static_cast<uintmax_t>(k)));
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      acc.append(buf.data(), static_cast<size_t>(in.gcount()));
      in.clear();
    }
  }
  const uint64_t h = Checksum64(acc.data(), acc.size());
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// "1.50 GiB", or "12.0 MiB" below 1 GiB.
std::string Size(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  }
  return buf;
}

}  // namespace

int64_t PhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<int64_t>(pages) * page_size;
}

std::string KvCacheNamespace(const EngineOptions& options, const Backend& backend) {
  const ModelConfig& c = backend.config();
  std::string path = options.model.model_path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  const std::string model = slash == std::string::npos ? path : path.substr(slash + 1);
  return "kiln-kv model=" + model + " arch=" + c.architecture +
         " layers=" + std::to_string(c.num_hidden_layers) +
         " hidden=" + std::to_string(c.hidden_size) +
         " heads=" + std::to_string(c.num_attention_heads) + "/" +
         std::to_string(c.num_key_value_heads) + " vocab=" + std::to_string(c.vocab_size) +
         " weights=" +
         (options.model.load_format == "dummy" ? "dummy:" + std::to_string(options.model.dummy_seed)
                                               : WeightsFingerprint(options.model.model_path)) +
         " dtype=" + options.model.dtype + " quantization=" + options.model.quantization + "/" +
         options.model.quantization_scale + " kv_cache_dtype=" + options.cache.kv_cache_dtype +
         " layout=" + backend.kv_record_layout();
}

StatusOr<KvTierSetup> SetUpKvTiers(const EngineOptions& options, Backend* backend,
                                   int max_model_len) {
  const CacheOptions& c = options.cache;
  KvTierSetup setup;
  const bool lower = !c.disk_cache_dir.empty() || !c.redis_url.empty();
  if (c.cpu_offload_bytes == 0 && !lower) return setup;
  setup.cache_namespace = KvCacheNamespace(options, *backend);
  const int64_t record_bytes = backend->kv_block_record_bytes();
  if (record_bytes <= 0) {
    return Status::InvalidArgument(
        "KV tiers (cpu offload, disk, Redis) need a backend with KV block transfers");
  }
  setup.host_records = c.cpu_offload_bytes / record_bytes;
  if (c.cpu_offload_bytes > 0 && setup.host_records == 0) {
    return Status::InvalidArgument("cpu_offload_bytes (" + std::to_string(c.cpu_offload_bytes) +
                                   ") is smaller than one KV block record (" +
                                   std::to_string(record_bytes) + " bytes)");
  }
  // Records fetched from disk / Redis are staged in host records; a fetch fills at most half of
  // them, so two longest prompts' blocks let one fetch bring a whole prompt.
  const int64_t prompt_blocks = (int64_t{max_model_len} + c.block_size - 1) / c.block_size;
  const int64_t staging_wanted = 2 * prompt_blocks;
  if (lower && setup.host_records == 0) {
    // No host tier asked for: a staging pool of its own, bounded in bytes (a long context must
    // not pin tens of GiB nobody asked for); longer prompts are fetched in several rounds.
    setup.host_records =
        std::min(std::max<int64_t>(kMinStagingRecords, staging_wanted),
                 std::max<int64_t>(kMinStagingRecords, kMaxStagingBytes / record_bytes));
  } else if (lower && setup.host_records < staging_wanted) {
    KILN_LOG(WARNING) << "KV host tier of " << setup.host_records
                      << " records is smaller than two longest prompts (" << staging_wanted
                      << " records of " << record_bytes
                      << " bytes): a long prompt's prefix comes from disk / Redis in several "
                         "fetches, or only in part";
  }
  const int64_t host_bytes = setup.host_records * record_bytes;
  const int64_t physical = PhysicalMemoryBytes();
  if (physical > 0 && host_bytes > physical) {
    return Status::ResourceExhausted(
        "the KV host tier (--cpu-offload-gb) needs " + Size(host_bytes) +
        " of host memory, more than this machine's physical memory (" + Size(physical) + ")");
  }
  KILN_RETURN_IF_ERROR(backend->AllocateHostKvPool(setup.host_records)
                           .WithContext("KV host tier of " + Size(host_bytes)));
  KILN_LOG(INFO) << "KV host tier: " << setup.host_records << " records of " << record_bytes
                 << " bytes (" << Size(host_bytes) << ")"
                 << (c.cpu_offload_bytes == 0 ? ", staging for the disk / Redis tiers" : "");
  const uint64_t ns_hash = Checksum64(setup.cache_namespace.data(), setup.cache_namespace.size());
  if (!c.disk_cache_dir.empty()) {
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<DiskTier> disk,
                          DiskTier::Open({c.disk_cache_dir, c.disk_cache_bytes}));
    setup.lower_tiers.push_back(std::move(disk));
  }
  if (!c.redis_url.empty()) {
    RedisTierOptions r;
    r.url = c.redis_url;
    r.namespace_hash = ns_hash;
    r.ttl_s = c.redis_ttl_s;
    r.max_bytes = c.redis_max_bytes;
    r.timeout_ms = c.redis_timeout_ms;
    KILN_ASSIGN_OR_RETURN(std::unique_ptr<RedisTier> redis, RedisTier::Create(r));
    setup.lower_tiers.push_back(std::move(redis));
  }
  return setup;
}

}  // namespace kiln
