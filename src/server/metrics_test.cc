#include "server/metrics.h"

#include <gtest/gtest.h>

namespace kiln::server {
namespace {

TEST(HistogramTest, CumulativeBucketsSumAndCount) {
  Histogram h({0.1, 1.0});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(0.5);
  h.Observe(3.0);
  std::string out;
  h.Render("x_seconds", "help", &out);
  EXPECT_NE(out.find("# TYPE x_seconds histogram"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_bucket{le=\"0.10000000000000001\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum 4.0499999999999998\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count 4\n"), std::string::npos) << out;
}

TEST(ServerMetricsTest, RendersEngineGaugesAndLatencies) {
  ServerMetrics m;
  m.ObserveRequest(0.02, 1.02, 11, "stop");  // TPOT = 1.0 / 10 = 0.1
  m.ObserveRequest(0.5, 0.5, 0, "abort");    // no tokens: no TTFT/TPOT sample
  m.ObserveHttpStatus(200);
  m.ObserveHttpStatus(400);
  m.ObserveHttpStatus(400);
  EngineMetrics e;
  e.num_running = 3;
  e.num_waiting = 7;
  e.kv_usage = 0.25;
  e.num_kv_blocks_used = 5;
  e.prefix_cache_queries = 200;
  e.prefix_cache_hits = 50;
  e.prompt_tokens_total = 123;
  e.generation_tokens_total = 456;
  const std::string text = m.Render(e, "tiny");
  EXPECT_NE(text.find("kiln_num_requests_running{model_name=\"tiny\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_num_requests_waiting{model_name=\"tiny\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_kv_cache_usage_ratio{model_name=\"tiny\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_kv_blocks_used{model_name=\"tiny\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_prefix_cache_hit_rate{model_name=\"tiny\"} 0.25\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_prompt_tokens_total{model_name=\"tiny\"} 123\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_generation_tokens_total{model_name=\"tiny\"} 456\n"),
            std::string::npos);
  EXPECT_NE(text.find("kiln_time_to_first_token_seconds_count 1\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_time_per_output_token_seconds_sum 0.10000000000000001\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kiln_e2e_request_latency_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(text.find("finished_reason=\"abort\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kiln_http_requests_total{code=\"400\"} 2\n"), std::string::npos);
}

TEST(ServerMetricsTest, RendersKvTiersWithOneHeaderPerMetric) {
  ServerMetrics m;
  EngineMetrics e;
  KvTierMetrics host;
  host.name = "host";
  host.hit_tokens = 640;
  host.query_tokens = 1000;
  host.bytes_loaded = 4096;
  host.bytes_stored = 8192;
  host.load_seconds = 0.5;
  host.predicted_block_load_seconds = 0.25;
  KvTierMetrics redis;
  redis.name = "redis";
  redis.enabled = false;
  e.kv_tiers = {host, redis};
  const std::string text = m.Render(e, "tiny");
  EXPECT_NE(text.find("kiln_kv_tier_hit_tokens_total{model_name=\"tiny\",tier=\"host\"} 640\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("kiln_kv_tier_bytes_total{model_name=\"tiny\",tier=\"host\","
                      "direction=\"load\"} 4096\n"),
            std::string::npos);
  EXPECT_NE(text.find("kiln_kv_tier_bytes_total{model_name=\"tiny\",tier=\"host\","
                      "direction=\"store\"} 8192\n"),
            std::string::npos);
  EXPECT_NE(text.find("kiln_kv_tier_enabled{model_name=\"tiny\",tier=\"redis\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("kiln_kv_tier_predicted_block_load_seconds{model_name=\"tiny\",tier=\"host\"} "
                      "0.25\n"),
            std::string::npos);
  // Prometheus' text format allows one HELP / TYPE per metric name.
  size_t n = 0;
  for (size_t p = text.find("# TYPE kiln_kv_tier_bytes_total"); p != std::string::npos;
       p = text.find("# TYPE kiln_kv_tier_bytes_total", p + 1))
    ++n;
  EXPECT_EQ(n, 1u);
}

}  // namespace
}  // namespace kiln::server
