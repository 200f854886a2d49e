#include "server/metrics.h"

#include <cstdio>

namespace kiln::server {
namespace {

std::string Fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void Series(std::string* out, const char* name, const char* type, const char* help,
            const std::string& labels, double value) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
          name + labels + " " + Fmt(value) + "\n";
}

// One labelled series per tier: "# HELP/# TYPE" once, then a line per tier.
template <typename Get>
void TierLines(std::string* out, const EngineMetrics& m, const std::string& model_name,
               const char* name, Get get, const char* direction = nullptr) {
  for (const KvTierMetrics& t : m.kv_tiers) {
    *out += std::string(name) + "{model_name=\"" + model_name + "\",tier=\"" + t.name + "\"" +
            (direction != nullptr ? std::string(",direction=\"") + direction + "\"" : "") + "} " +
            Fmt(get(t)) + "\n";
  }
}

void Header(std::string* out, const char* name, const char* type, const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

template <typename Get>
void TierSeries(std::string* out, const EngineMetrics& m, const std::string& model_name,
                const char* name, const char* type, const char* help, Get get) {
  Header(out, name, type, help);
  TierLines(out, m, model_name, name, get);
}

// A counter with a direction label: load (toward the device) and store (away from it).
template <typename GetLoad, typename GetStore>
void DirectionSeries(std::string* out, const EngineMetrics& m, const std::string& model_name,
                     const char* name, const char* help, GetLoad load, GetStore store) {
  Header(out, name, "counter", help);
  TierLines(out, m, model_name, name, load, "load");
  TierLines(out, m, model_name, name, store, "store");
}

// Per-tier series of the tiered prefix cache (device, host, disk, redis).
void RenderKvTiers(const EngineMetrics& m, const std::string& model_name, std::string* out) {
  if (m.kv_tiers.empty()) return;
  auto d = [](int64_t v) { return static_cast<double>(v); };
  TierSeries(out, m, model_name, "kiln_kv_tier_enabled", "gauge",
             "1 while the KV tier serves (Redis turns off when down or slow).",
             [](const KvTierMetrics& t) { return t.enabled ? 1.0 : 0.0; });
  TierSeries(out, m, model_name, "kiln_kv_tier_capacity_bytes", "gauge", "KV tier capacity.",
             [&](const KvTierMetrics& t) { return d(t.capacity_bytes); });
  TierSeries(out, m, model_name, "kiln_kv_tier_used_bytes", "gauge", "KV tier bytes held.",
             [&](const KvTierMetrics& t) { return d(t.used_bytes); });
  TierSeries(out, m, model_name, "kiln_kv_tier_query_tokens_total", "counter",
             "Prompt tokens looked up in the tier (the tiers above missed them).",
             [&](const KvTierMetrics& t) { return d(t.query_tokens); });
  TierSeries(out, m, model_name, "kiln_kv_tier_hit_tokens_total", "counter",
             "Prompt tokens found in the tier.",
             [&](const KvTierMetrics& t) { return d(t.hit_tokens); });
  DirectionSeries(out, m, model_name, "kiln_kv_tier_bytes_total",
                  "Bytes moved toward the device (load) or away from it (store).",
                  [&](const KvTierMetrics& t) { return d(t.bytes_loaded); },
                  [&](const KvTierMetrics& t) { return d(t.bytes_stored); });
  DirectionSeries(out, m, model_name, "kiln_kv_tier_transfer_seconds_total",
                  "Time spent moving the bytes of kiln_kv_tier_bytes_total.",
                  [](const KvTierMetrics& t) { return t.load_seconds; },
                  [](const KvTierMetrics& t) { return t.store_seconds; });
  TierSeries(out, m, model_name, "kiln_kv_tier_loads_total", "counter",
             "Loads (one request's blocks at a time).",
             [&](const KvTierMetrics& t) { return d(t.num_loads); });
  TierSeries(out, m, model_name, "kiln_kv_tier_load_latency_seconds_total", "counter",
             "Summed load latency (request to data ready); divide by loads_total.",
             [](const KvTierMetrics& t) { return t.load_latency_seconds; });
  TierSeries(out, m, model_name, "kiln_kv_tier_predicted_block_load_seconds", "gauge",
             "Predicted time to load one block: record bytes / measured load bandwidth.",
             [](const KvTierMetrics& t) { return t.predicted_block_load_seconds; });
  TierSeries(out, m, model_name, "kiln_kv_tier_errors_total", "counter",
             "Failed or corrupt tier reads and writes (served as misses).",
             [&](const KvTierMetrics& t) { return d(t.errors); });
  TierSeries(out, m, model_name, "kiln_kv_tier_dropped_writes_total", "counter",
             "Stores skipped (queue full, tier off, over its size limit).",
             [&](const KvTierMetrics& t) { return d(t.dropped_writes); });
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    *out += name + "_bucket{le=\"" + Fmt(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += counts_.back();
  *out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  *out += name + "_sum " + Fmt(sum_) + "\n";
  *out += name + "_count " + std::to_string(count_) + "\n";
}

ServerMetrics::ServerMetrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
             1.0, 2.5}),
      e2e_({0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
            50.0, 60.0, 120.0}) {}

void ServerMetrics::ObserveRequest(double ttft_s, double e2e_s, int num_generated_tokens,
                                   const std::string& finish_reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (num_generated_tokens > 0) ttft_.Observe(ttft_s);
  if (num_generated_tokens > 1) tpot_.Observe((e2e_s - ttft_s) / (num_generated_tokens - 1));
  e2e_.Observe(e2e_s);
  ++finished_by_reason_[finish_reason.empty() ? "none" : finish_reason];
}

void ServerMetrics::ObserveHttpStatus(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++http_by_status_[status];
}

std::string ServerMetrics::Render(const EngineMetrics& m, const std::string& model_name) const {
  std::string out;
  const std::string labels = "{model_name=\"" + model_name + "\"}";
  Series(&out, "kiln_num_requests_running", "gauge", "Requests in the running batch.", labels,
         m.num_running);
  Series(&out, "kiln_num_requests_waiting", "gauge", "Requests waiting to be scheduled.", labels,
         m.num_waiting);
  Series(&out, "kiln_kv_cache_usage_ratio", "gauge", "Fraction of KV blocks used by live requests.",
         labels, m.kv_usage);
  Series(&out, "kiln_kv_blocks_total", "gauge", "KV cache blocks.", labels,
         static_cast<double>(m.num_kv_blocks_total));
  Series(&out, "kiln_kv_blocks_used", "gauge", "KV blocks referenced by live requests.", labels,
         static_cast<double>(m.num_kv_blocks_used));
  Series(&out, "kiln_kv_blocks_cached", "gauge", "Free KV blocks holding reusable prefix KV.",
         labels, static_cast<double>(m.num_kv_blocks_cached));
  Series(&out, "kiln_prefix_cache_queries_total", "counter", "Prompt tokens looked up.", labels,
         static_cast<double>(m.prefix_cache_queries));
  Series(&out, "kiln_prefix_cache_hits_total", "counter",
         "Prompt tokens found in the prefix cache.", labels,
         static_cast<double>(m.prefix_cache_hits));
  const double hit_rate =
      m.prefix_cache_queries > 0
          ? static_cast<double>(m.prefix_cache_hits) / static_cast<double>(m.prefix_cache_queries)
          : 0.0;
  Series(&out, "kiln_prefix_cache_hit_rate", "gauge", "Prefix-cache hits / queries (tokens).",
         labels, hit_rate);
  Series(&out, "kiln_num_preemptions_total", "counter", "Preempted requests.", labels,
         static_cast<double>(m.num_preemptions));
  Series(&out, "kiln_kv_fetch_timeouts_total", "counter",
         "Disk / Redis KV fetches a request stopped waiting for (it ran without them).", labels,
         static_cast<double>(m.kv_fetch_timeouts));
  Series(&out, "kiln_prompt_tokens_total", "counter", "Prefilled prompt tokens.", labels,
         static_cast<double>(m.prompt_tokens_total));
  Series(&out, "kiln_generation_tokens_total", "counter", "Generated tokens.", labels,
         static_cast<double>(m.generation_tokens_total));
  Series(&out, "kiln_engine_steps_total", "counter", "Engine steps.", labels,
         static_cast<double>(m.num_steps));

  RenderKvTiers(m, model_name, &out);

  std::lock_guard<std::mutex> lock(mu_);
  ttft_.Render("kiln_time_to_first_token_seconds", "Time to first token.", &out);
  tpot_.Render("kiln_time_per_output_token_seconds", "Mean time per output token after the first.",
               &out);
  e2e_.Render("kiln_e2e_request_latency_seconds", "End-to-end request latency.", &out);
  out +=
      "# HELP kiln_request_success_total Finished requests by finish reason.\n"
      "# TYPE kiln_request_success_total counter\n";
  for (const auto& [reason, n] : finished_by_reason_) {
    out += "kiln_request_success_total{model_name=\"" + model_name + "\",finished_reason=\"" +
           reason + "\"} " + std::to_string(n) + "\n";
  }
  out +=
      "# HELP kiln_http_requests_total HTTP responses by status code.\n"
      "# TYPE kiln_http_requests_total counter\n";
  for (const auto& [status, n] : http_by_status_) {
    out += "kiln_http_requests_total{code=\"" + std::to_string(status) + "\"} " +
           std::to_string(n) + "\n";
  }
  return out;
}

}  // namespace kiln::server
