// The workflow engine's overhead per node: runs workflows whose nodes do (almost) no work — a
// chain of N template nodes with literal text, and a fan-out of N parallel branches into a join —
// and reports wall time per node (scheduling, template context, records, events), median of R
// runs, against the 1 ms per node budget of issue #17.
//
//   workflow_bench [--nodes N] [--runs R]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "workflow/executor.h"
#include "workflow/spec.h"
#include "workflow/workflow.h"

namespace kiln::workflow {
namespace {

std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

Json Chain(int n, bool templated) {
  Json nodes = Json::array({{{"id", "start"}, {"type", "start"}}});
  for (int i = 0; i < n; ++i) {
    const std::string prev = i == 0 ? "" : "n" + std::to_string(i - 1);
    nodes.push_back({{"id", "n" + std::to_string(i)},
                     {"type", "template"},
                     {"template", templated && i > 0 ? "{{ nodes." + prev + ".text }}+" : "x"}});
  }
  nodes.push_back({{"id", "out"}, {"type", "end"}, {"outputs", {{"x", "done"}}}});
  return {{"name", "chain"}, {"nodes", nodes}};
}

Json FanOut(int n) {
  Json nodes =
      Json::array({{{"id", "start"}, {"type", "start"}}, {{"id", "fan"}, {"type", "parallel"}}});
  Json edges = Json::array({{{"from", "start"}, {"to", "fan"}}});
  for (int i = 0; i < n; ++i) {
    const std::string id = "b" + std::to_string(i);
    nodes.push_back({{"id", id}, {"type", "template"}, {"template", "x"}});
    edges.push_back({{"from", "fan"}, {"to", id}});
    edges.push_back({{"from", id}, {"to", "join"}});
  }
  nodes.push_back({{"id", "join"}, {"type", "join"}});
  nodes.push_back({{"id", "out"}, {"type", "end"}});
  edges.push_back({{"from", "join"}, {"to", "out"}});
  return {{"name", "fan"}, {"nodes", nodes}, {"edges", edges}};
}

double CpuUs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// Median wall time per node; *cpu_us receives the median process CPU time per node (on a loaded
// machine wall time includes waiting for a core; CPU time does not).
double MedianPerNodeUs(const Json& doc, int runs, int* num_nodes, double* cpu_us) {
  auto spec = SpecFromJson(doc);
  auto w = Workflow::Compile(std::move(*spec));
  if (!w.ok()) {
    std::fprintf(stderr, "compile: %s\n", w.status().ToString().c_str());
    std::exit(1);
  }
  Services services{ServicesOptions{}};
  Executor executor(&services);
  *num_nodes = (*w)->num_nodes();
  std::vector<double> per_node, cpu_per_node;
  for (int r = 0; r < runs; ++r) {
    const double c0 = CpuUs();
    RunOptions o;
    o.on_event = [](const WorkflowEvent&) {};  // events are built and delivered, as in the server
    const auto t0 = std::chrono::steady_clock::now();
    RunResult res = executor.Run(**w, std::move(o));
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    if (res.status != "succeeded") {
      std::fprintf(stderr, "run failed: %s\n", res.error.c_str());
      std::exit(1);
    }
    per_node.push_back(us / *num_nodes);
    cpu_per_node.push_back((CpuUs() - c0) / *num_nodes);
  }
  std::sort(per_node.begin(), per_node.end());
  std::sort(cpu_per_node.begin(), cpu_per_node.end());
  *cpu_us = cpu_per_node[cpu_per_node.size() / 2];
  return per_node[per_node.size() / 2];
}

}  // namespace
}  // namespace kiln::workflow

int main(int argc, char** argv) {
  int nodes = 100, runs = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--nodes")) nodes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
  }
  using kiln::workflow::MedianPerNodeUs;
  std::printf("workflow engine overhead per node (median of %d runs; budget 1000 us)\n", runs);
  std::printf("device: %s, %u hardware threads\n", kiln::workflow::CpuName().c_str(),
              std::thread::hardware_concurrency());
  int n = 0;
  double cpu = 0;
  double us = MedianPerNodeUs(kiln::workflow::Chain(nodes, false), runs, &n, &cpu);
  std::printf(
      "  chain of %3d literal template nodes:          %8.1f us/node wall, %8.1f us/node CPU\n", n,
      us, cpu);
  us = MedianPerNodeUs(kiln::workflow::Chain(nodes, true), runs, &n, &cpu);
  std::printf(
      "  chain of %3d nodes reading the previous node: %8.1f us/node wall, %8.1f us/node CPU\n", n,
      us, cpu);
  us = MedianPerNodeUs(kiln::workflow::FanOut(nodes), runs, &n, &cpu);
  std::printf(
      "  %3d parallel branches into a join:           %8.1f us/node wall, %8.1f us/node CPU\n", n,
      us, cpu);
  return 0;
}
