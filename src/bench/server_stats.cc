#include "bench/server_stats.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace kiln::bench {

std::map<std::string, double> ParseMetricsText(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) continue;
    const std::string name = line.substr(0, name_end);
    size_t value_start = name_end;
    if (line[name_end] == '{') {
      const size_t close = line.find('}', name_end);
      if (close == std::string::npos) continue;
      value_start = close + 1;
    }
    const char* begin = line.c_str() + value_start;
    char* end = nullptr;
    const double v = std::strtod(begin, &end);
    if (end == begin) continue;
    out[name] += v;
  }
  return out;
}

MetricsSnapshot ReadSnapshot(const std::string& metrics_text) {
  const auto m = ParseMetricsText(metrics_text);
  MetricsSnapshot s;
  auto get = [&m](const char* name, double* v) {
    auto it = m.find(name);
    if (it == m.end()) return false;
    *v = it->second;
    return true;
  };
  if (get("kiln_prefix_cache_hits_total", &s.prefix_cache_hits) &&
      get("kiln_prefix_cache_queries_total", &s.prefix_cache_queries)) {
    s.has_prefix_cache = true;
    s.server = "kiln";
  } else if (get("vllm:prefix_cache_hits_total", &s.prefix_cache_hits) &&
             get("vllm:prefix_cache_queries_total", &s.prefix_cache_queries)) {
    s.has_prefix_cache = true;
    s.server = "vllm";
  }
  if (get("kiln_kv_cache_usage_ratio", &s.kv_usage)) {
    s.has_kv_usage = true;
    s.server = "kiln";
  } else if (get("vllm:kv_cache_usage_perc", &s.kv_usage) ||
             get("vllm:gpu_cache_usage_perc", &s.kv_usage)) {
    s.has_kv_usage = true;
    s.server = "vllm";
  }
  return s;
}

void ServerStatsBuilder::Add(const MetricsSnapshot& s) {
  if (!s.has_prefix_cache && !s.has_kv_usage) return;
  if (!have_first_) {
    first_ = s;
    have_first_ = true;
  }
  last_ = s;
  ++count_;
  if (s.has_kv_usage) {
    kv_sum_ += s.kv_usage;
    kv_max_ = std::max(kv_max_, s.kv_usage);
    ++kv_count_;
  }
}

ServerStats ServerStatsBuilder::Build() const {
  ServerStats st;
  if (!have_first_) return st;
  st.available = true;
  st.server = last_.server;
  st.num_scrapes = count_;
  if (first_.has_prefix_cache && last_.has_prefix_cache) {
    st.prefix_cache_hit_tokens = last_.prefix_cache_hits - first_.prefix_cache_hits;
    st.prefix_cache_query_tokens = last_.prefix_cache_queries - first_.prefix_cache_queries;
    if (st.prefix_cache_query_tokens > 0) {
      st.prefix_cache_hit_rate = st.prefix_cache_hit_tokens / st.prefix_cache_query_tokens;
    }
  }
  if (kv_count_ > 0) {
    st.kv_usage_mean = kv_sum_ / kv_count_;
    st.kv_usage_max = kv_max_;
  }
  return st;
}

}  // namespace kiln::bench
