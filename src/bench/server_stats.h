// What the load generator reads from a server's Prometheus /metrics: prefix-cache hit counters and
// KV usage, for kiln (kiln_prefix_cache_{hits,queries}_total, kiln_kv_cache_usage_ratio) and vLLM
// (vllm:prefix_cache_{hits,queries}_total, vllm:kv_cache_usage_perc / vllm:gpu_cache_usage_perc).
// A series with several label sets (e.g. per tier) is summed. Servers without these series simply
// report nothing (available == false); that is not an error.
//
// Pure functions; thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace kiln::bench {

// name → value, summed over label sets; comment lines and malformed lines are skipped.
std::map<std::string, double> ParseMetricsText(const std::string& text);

struct MetricsSnapshot {
  bool has_prefix_cache = false;
  double prefix_cache_hits = 0;     // tokens
  double prefix_cache_queries = 0;  // tokens
  bool has_kv_usage = false;
  double kv_usage = 0;  // fraction of the KV pool in use, 0..1
  std::string server;   // "kiln", "vllm" or "" (unknown)
};

MetricsSnapshot ReadSnapshot(const std::string& metrics_text);

// Server-side figures over one measurement point.
struct ServerStats {
  bool available = false;  // a recognised /metrics answered
  std::string server;
  double prefix_cache_hit_rate = -1;  // hits / queries between the first and last scrape; −1: n/a
  double prefix_cache_hit_tokens = 0;
  double prefix_cache_query_tokens = 0;
  double kv_usage_mean = -1;  // over the periodic scrapes; −1: n/a
  double kv_usage_max = -1;
  int num_scrapes = 0;
};

// Accumulates snapshots taken during a point.
class ServerStatsBuilder final {
 public:
  void Add(const MetricsSnapshot& s);
  ServerStats Build() const;

 private:
  bool have_first_ = false;
  MetricsSnapshot first_;
  MetricsSnapshot last_;
  double kv_sum_ = 0;
  double kv_max_ = -1;
  int kv_count_ = 0;
  int count_ = 0;
};

}  // namespace kiln::bench
