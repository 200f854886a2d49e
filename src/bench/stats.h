// Latency statistics for the load generator: percentiles by linear interpolation between closest
// ranks (numpy's default: rank = p/100 · (n − 1)), and the P50/P90/P99 summary the reports print.
// Pure functions over copies; no state, thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::bench {

// The p-th percentile (0 ≤ p ≤ 100) of `values`; 0 for an empty set.
double Percentile(std::vector<double> values, double p);

struct LatencySummary {
  int64_t count = 0;
  double mean = 0.0;
  double p50 = 0.0;
  double p90 = 0.0;
  double p99 = 0.0;
  double max = 0.0;
};

LatencySummary Summarize(const std::vector<double>& values);

}  // namespace kiln::bench
