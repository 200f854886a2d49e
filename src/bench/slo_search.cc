#include "bench/slo_search.h"

#include <cstdio>

namespace kiln::bench {

Status SweepOptions::Validate() const {
  if (!(start_rate > 0) || !(min_rate > 0) || !(max_rate >= start_rate) ||
      !(start_rate >= min_rate)) {
    return Status::InvalidArgument("sweep: need 0 < min rate <= start rate <= max rate");
  }
  if (max_points < 2 || max_points > 1000) {
    return Status::InvalidArgument("--sweep-max-points must be in [2, 1000]");
  }
  if (!(rel_tolerance > 0 && rel_tolerance < 1)) {
    return Status::InvalidArgument("--sweep-tolerance must be in (0, 1)");
  }
  if (!(slo_e2e_s > 0)) return Status::InvalidArgument("--slo-p99-ms must be positive");
  if (!(max_error_rate >= 0 && max_error_rate <= 1) ||
      !(max_delayed_fraction >= 0 && max_delayed_fraction <= 1)) {
    return Status::InvalidArgument("sweep: error and delay fractions must be in [0, 1]");
  }
  return Status::Ok();
}

std::string JudgePoint(const PointVerdictInput& p, const SweepOptions& o) {
  char buf[160];
  if (p.num_sent == 0 || p.num_failed >= p.num_sent) return "no request succeeded";
  const double err = static_cast<double>(p.num_failed) / static_cast<double>(p.num_sent);
  if (err > o.max_error_rate) {
    std::snprintf(buf, sizeof(buf), "%.1f%% of requests failed (limit %.1f%%)", 100 * err,
                  100 * o.max_error_rate);
    return buf;
  }
  if (p.p99_e2e_s > o.slo_e2e_s) {
    std::snprintf(buf, sizeof(buf), "P99 E2E %.0f ms > SLO %.0f ms", p.p99_e2e_s * 1e3,
                  o.slo_e2e_s * 1e3);
    return buf;
  }
  const double delayed =
      static_cast<double>(p.num_delayed_arrivals) / static_cast<double>(p.num_sent);
  if (delayed > o.max_delayed_fraction) {
    std::snprintf(buf, sizeof(buf),
                  "%.0f%% of arrivals waited for a ready conversation (raise --conversations)",
                  100 * delayed);
    return buf;
  }
  return "";
}

StatusOr<SweepOutcome> SloSweep(
    const SweepOptions& o,
    const std::function<StatusOr<PointVerdictInput>(double rate, int step)>& measure) {
  KILN_RETURN_IF_ERROR(o.Validate());
  SweepOutcome out;
  double lo = 0, hi = 0;  // highest passing, lowest failing (0: none yet)
  auto run = [&](double rate) -> StatusOr<bool> {
    KILN_ASSIGN_OR_RETURN(PointVerdictInput p, measure(rate, static_cast<int>(out.steps.size())));
    SweepStep step;
    step.rate = rate;
    step.reason = JudgePoint(p, o);
    step.passes = step.reason.empty();
    out.steps.push_back(step);
    if (step.passes && rate > lo) {
      lo = rate;
      out.best_step = static_cast<int>(out.steps.size()) - 1;
    }
    if (!step.passes && (hi == 0 || rate < hi)) hi = rate;
    return step.passes;
  };
  double rate = o.start_rate;
  // Bracket.
  while (static_cast<int>(out.steps.size()) < o.max_points) {
    KILN_ASSIGN_OR_RETURN(bool passes, run(rate));
    if (passes) {
      if (hi > 0) break;
      if (rate >= o.max_rate) break;
      rate = std::min(rate * 2, o.max_rate);
    } else {
      if (lo > 0) break;
      if (rate <= o.min_rate) break;
      rate = std::max(rate / 2, o.min_rate);
    }
  }
  // Bisect.
  while (lo > 0 && hi > 0 && (hi - lo) / lo > o.rel_tolerance &&
         static_cast<int>(out.steps.size()) < o.max_points) {
    KILN_RETURN_IF_ERROR(run((lo + hi) / 2).status());
  }
  out.found = lo > 0;
  out.best_rate = lo;
  out.first_failing_rate = hi;
  return out;
}

}  // namespace kiln::bench
