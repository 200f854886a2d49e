// Reports of the load generator: the result JSON (configuration, every point's summary and server
// figures, the sweep's outcome, latency samples for the histogram), the per-request log (JSON
// lines, one record per request, from which every percentile in the result can be recomputed), the
// summary table printed to stdout, the production table (configurations side by side) and a
// self-contained HTML report: the result JSON embedded in the page and plotted by inline script as
// SVG (latency percentiles against rate, throughput against rate, goodput against rate, a latency
// histogram, the run's configuration); no network access, no external files.
//
// Pure functions (no I/O except WriteFile); thread-compatible.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/runner.h"
#include "bench/slo_search.h"
#include "kiln/status.h"

namespace kiln::bench {

// j as JSON text (indent as nlohmann's dump). Strings may hold server-provided text that is not
// UTF-8 (an error body cut from a server's response): invalid bytes become U+FFFD instead of
// throwing. Every JSON output of the tool goes through here.
std::string DumpJson(const nlohmann::json& j, int indent = -1);

nlohmann::json SummaryToJson(const PointSummary& s);
nlohmann::json ServerStatsToJson(const ServerStats& s);
nlohmann::json RecordToJson(const RequestRecord& r, const std::string& series);
// One point: rate, concurrency, summary, server figures, the sweep verdict when there was one.
nlohmann::json PointToJson(const PointResult& p, const SweepStep* step);

// The text table of one series' points (one row per point).
std::string PointsTable(const nlohmann::json& series, double slo_ms);
// Configurations side by side: max QPS under the SLO, output tokens/s, P99 E2E and prefix-cache hit
// rate at that rate; a configuration with "error" set is shown as not available, with its message.
std::string ProductionTable(const nlohmann::json& result);
std::string RenderHtml(const nlohmann::json& result);

Status WriteFile(const std::string& path, const std::string& contents);

}  // namespace kiln::bench
