// The SLO sweep: the highest Poisson request rate whose measured P99 end-to-end latency meets the
// SLO, by a bracketing search. From start_rate the rate doubles while points pass (halves while
// they fail) until a passing and a failing rate bracket the answer, then bisects the bracket until
// it is within rel_tolerance of its lower end or max_points points were measured. A point passes
// when its P99 E2E ≤ the SLO, at most max_error_rate of its requests failed, at least one succeeded
// and no more than max_delayed_fraction of its arrivals had to wait for a ready request (a starved
// workload cannot show the rate it was asked for); a point over the SLO fails for its latency
// first. The search is independent of how a point is measured (a callback), so it is unit-tested on
// synthetic latency curves.
//
// Thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::bench {

struct SweepOptions {
  double start_rate = 1.0;
  double min_rate = 0.01;
  double max_rate = 10000.0;
  int max_points = 10;
  double rel_tolerance = 0.1;
  double slo_e2e_s = 1.5;
  double max_error_rate = 0.01;
  double max_delayed_fraction = 0.1;
  Status Validate() const;
};

// What the search needs to know about one measured point.
struct PointVerdictInput {
  double p99_e2e_s = 0;
  int64_t num_sent = 0;
  int64_t num_failed = 0;
  int64_t num_delayed_arrivals = 0;
};

struct SweepStep {
  double rate = 0;
  bool passes = false;
  std::string reason;  // why it failed ("" when it passes)
};

struct SweepOutcome {
  std::vector<SweepStep> steps;   // in measurement order
  bool found = false;             // some rate passed
  double best_rate = 0;           // the highest passing rate
  int best_step = -1;             // its index in steps
  double first_failing_rate = 0;  // the lowest failing rate above best_rate (0: none measured)
};

// Judges one point against the options; returns "" when it passes, else the reason.
std::string JudgePoint(const PointVerdictInput& p, const SweepOptions& o);

// measure(rate, step index) runs one point; an error status aborts the sweep.
StatusOr<SweepOutcome> SloSweep(
    const SweepOptions& options,
    const std::function<StatusOr<PointVerdictInput>(double rate, int step)>& measure);

}  // namespace kiln::bench
