// Server-side metrics and their Prometheus text exposition. ServerMetrics owns the latency
// histograms (TTFT, TPOT, end-to-end) and HTTP counters the server observes itself; engine gauges
// and counters (running/waiting, KV usage, prefix-cache hits, token totals) come from
// Engine::Metrics() at scrape time and are rendered next to them.
//
// Thread-safety: ServerMetrics is safe to update and render from any number of threads (one mutex;
// updates are a few additions per finished request).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/engine.h"

namespace kiln::server {

// A cumulative Prometheus histogram with fixed upper bounds (seconds). Not thread-safe by itself.
class Histogram final {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  // "# HELP/# TYPE" header plus _bucket{le=...}, _sum and _count lines.
  void Render(const std::string& name, const std::string& help, std::string* out) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket (non-cumulative), plus +Inf at the end
  double sum_ = 0.0;
  int64_t count_ = 0;
};

class ServerMetrics final {
 public:
  ServerMetrics();
  // One finished engine request: timings from its final RequestOutput.
  void ObserveRequest(double ttft_s, double e2e_s, int num_generated_tokens,
                      const std::string& finish_reason);
  void ObserveHttpStatus(int status);
  // Prometheus text format (version 0.0.4) of the engine snapshot plus this object's series.
  std::string Render(const EngineMetrics& engine, const std::string& model_name) const;

 private:
  mutable std::mutex mu_;
  Histogram ttft_;
  Histogram tpot_;
  Histogram e2e_;
  std::map<std::string, int64_t> finished_by_reason_;
  std::map<int, int64_t> http_by_status_;
};

}  // namespace kiln::server
