#include "workflow/executor.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>

namespace kiln::workflow {
namespace {

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// What one node's execution produced, handed from its thread to the scheduler.
struct Completion {
  int node;
  NodeRecord record;
  bool fail_branch = false;  // take the "fail" edges
  bool run_failed = false;   // no fallback caught the failure
  std::string run_error;     // the run passed its deadline or step limit: it fails with this
};

class Run final {
 public:
  Run(const Workflow& w, Services* services, RunOptions& o, RunResult* result)
      : w_(w), services_(services), o_(o), result_(result) {}

  void Execute(Json inputs);

 private:
  void Emit(const std::string& type, Json data);
  Completion RunNode(int i, const Json& vars, std::vector<std::string> preds);
  void Decide(Completion c);
  void Resolve(int node, bool taken, int from);
  void Skip(int node);
  bool Cancelled() const { return cancelled_.load(); }
  bool PastDeadline() const { return Clock::now() >= deadline_; }
  void Fail(const std::string& status, const std::string& error);

  const Workflow& w_;
  Services* services_;
  RunOptions& o_;
  RunResult* result_;
  Clock::time_point t0_ = Clock::now();
  Clock::time_point deadline_;
  std::string timeout_error_;      // the run's error once past deadline_
  std::atomic<int> num_steps_{0};  // attempts started, over all nodes (limits.max_steps)
  std::atomic<bool> cancelled_{false};

  std::mutex event_mu_;
  std::mutex mu_;  // guards the completion queue below
  std::condition_variable cv_;
  std::deque<Completion> done_;
  bool outside_cancel_ = false;  // under mu_

  // Scheduler state (touched by the scheduling thread only).
  Json vars_;
  std::vector<int> num_resolved_, num_taken_;
  std::vector<std::vector<std::string>> preds_;
  std::deque<int> ready_;
};

void Run::Emit(const std::string& type, Json data) {
  if (!o_.on_event) return;
  Json d = {{"run_id", result_->run_id}};
  for (auto it = data.begin(); it != data.end(); ++it) d[it.key()] = std::move(it.value());
  std::lock_guard<std::mutex> lock(event_mu_);
  o_.on_event(WorkflowEvent{type, std::move(d)});
}

void Run::Fail(const std::string& status, const std::string& error) {
  if (result_->status.empty()) {
    result_->status = status;
    result_->error = error;
  }
  cancelled_ = true;
}

Completion Run::RunNode(int i, const Json& vars, std::vector<std::string> preds) {
  const Node& node = w_.node(i);
  const NodeSpec& spec = w_.node_spec(i);
  Completion c;
  c.node = i;
  NodeRecord& r = c.record;
  r.node_id = spec.id;
  r.type = spec.type;
  const auto start = Clock::now();
  r.started_ms = MsSince(t0_);
  Emit("node_started", {{"node_id", spec.id}, {"type", spec.type}});
  std::mt19937_64 rng(std::random_device{}() ^ (static_cast<uint64_t>(i) << 32));
  std::uniform_real_distribution<double> uniform(0.0, 1.0);

  bool ok = false;
  // Past the run's deadline or step limit no further attempt starts and no fallback applies.
  const int max_steps = w_.spec().max_steps;
  auto stop_reason = [&]() -> std::string {
    if (PastDeadline()) return timeout_error_;
    if (num_steps_.fetch_add(1) >= max_steps) {
      return "the run passed its step limit (" + std::to_string(max_steps) + ")";
    }
    return "";
  };
  for (int v = 0; v < node.num_variants() && !ok && !Cancelled() && c.run_error.empty(); ++v) {
    for (int a = 1; a <= spec.retry.max_attempts && !Cancelled(); ++a) {
      c.run_error = stop_reason();
      if (!c.run_error.empty()) break;
      NodeContext ctx;
      ctx.vars = &vars;
      ctx.variant = v;
      ctx.attempt = a;
      ctx.deadline = deadline_;
      if (spec.timeout_s > 0) {
        const auto d = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(spec.timeout_s));
        ctx.deadline = std::min(ctx.deadline, d);
      }
      ctx.cancelled = &cancelled_;
      ctx.services = services_;
      ctx.predecessors = preds;
      ctx.emit = [this, &spec](const std::string& type, Json data) {
        Json d = {{"node_id", spec.id}};
        for (auto it = data.begin(); it != data.end(); ++it) d[it.key()] = std::move(it.value());
        Emit(type, std::move(d));
      };
      const auto attempt_start = Clock::now();
      StatusOr<Json> out = Status::Internal("the node did not run");
      try {
        out = node.Run(ctx);
      } catch (const std::exception& e) {  // a bug in the node: this attempt fails, the run goes on
        out = Status::Internal(std::string("the node threw: ") + e.what());
      }
      AttemptRecord ar;
      ar.variant = node.VariantName(v);
      ar.attempt = a;
      ar.duration_ms = MsSince(attempt_start);
      r.num_tokens += ctx.num_tokens;
      r.input = std::move(ctx.input);
      if (out.ok()) {
        r.attempts.push_back(std::move(ar));
        r.output = out->is_object() ? std::move(*out) : Json{{"value", std::move(*out)}};
        r.path = node.VariantName(v);
        r.status = "succeeded";
        ok = true;
        break;
      }
      ar.error = out.status().ToString();
      r.error = ar.error;
      r.attempts.push_back(std::move(ar));
      if (Cancelled() || a == spec.retry.max_attempts) break;
      // Backoff, interrupted by cancellation and bounded by the run's deadline.
      const auto until = std::min(
          deadline_,
          Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                             spec.retry.BackoffSeconds(a, uniform(rng)))));
      while (Clock::now() < until && !Cancelled()) {
        std::this_thread::sleep_for(
            std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(5)));
      }
    }
  }
  if (!ok && c.run_error.empty() && PastDeadline()) c.run_error = timeout_error_;
  if (!ok) {
    if (!c.run_error.empty()) {
      r.status = "failed";
      r.error = c.run_error;
    } else if (Cancelled()) {
      r.status = "cancelled";
      if (r.error.empty()) r.error = "the run was stopped";
    } else if (spec.fallback.has_default) {
      r.status = "succeeded";
      r.path = "default";
      const Json& d = spec.fallback.default_output;
      r.output = d.is_object() ? d : Json{{"value", d}};
    } else if (spec.fallback.branch) {
      r.status = "failed";
      r.path = "fail_branch";
      r.output = {{"error", r.error}};
      c.fail_branch = true;
    } else {
      r.status = "failed";
      c.run_failed = true;
    }
  }
  r.duration_ms = MsSince(start);
  return c;
}

void Run::Skip(int node) {
  NodeRecord r;
  r.node_id = w_.node_spec(node).id;
  r.type = w_.node_spec(node).type;
  r.status = "skipped";
  r.started_ms = MsSince(t0_);
  result_->nodes.push_back(r);
  for (int ei : w_.out_edges(node)) Resolve(w_.edges()[static_cast<size_t>(ei)].to, false, node);
}

void Run::Resolve(int node, bool taken, int from) {
  const size_t n = static_cast<size_t>(node);
  ++num_resolved_[n];
  if (taken) {
    ++num_taken_[n];
    preds_[n].push_back(w_.node_spec(from).id);
  }
  if (num_resolved_[n] == static_cast<int>(w_.in_edges(node).size())) {
    if (num_taken_[n] > 0) {
      ready_.push_back(node);
    } else {
      Skip(node);
    }
  }
}

void Run::Decide(Completion c) {
  NodeRecord& r = c.record;
  const int i = c.node;
  result_->num_tokens += r.num_tokens;
  if (r.status == "succeeded" && r.path != "primary") ++result_->num_fallbacks;
  if (c.fail_branch) ++result_->num_fallbacks;
  if (r.status == "succeeded" || c.fail_branch) vars_["nodes"][r.node_id] = r.output;
  Emit("node_finished", r.ToJson());
  if (r.status == "succeeded") {
    const std::string& type = r.type;
    if (type == "end") {
      for (auto it = r.output.begin(); it != r.output.end(); ++it)
        result_->outputs[it.key()] = it.value();
    } else if (type == "answer") {
      const auto a = r.output.find("answer");  // a fallback.default may hold any JSON value
      result_->outputs["answer"] = a != r.output.end() ? *a : Json("");
    }
  }
  const bool branching = w_.node(i).is_branching() && r.status == "succeeded";
  std::string branch;  // a string for condition outputs and (checked at compile) their defaults
  if (branching) {
    const auto b = r.output.find("branch");
    if (b != r.output.end() && b->is_string()) branch = b->get<std::string>();
  }
  if (!c.run_error.empty()) {
    Fail("failed", c.run_error);
  } else if (!Cancelled() && PastDeadline()) {
    Fail("failed", timeout_error_);  // the node finished, but after the run's deadline
  } else if (c.run_failed) {
    Fail("failed", "node '" + r.node_id + "' failed: " + r.error);
  } else if (r.status == "cancelled") {
    // the run's status was set by whoever cancelled it
  }
  result_->nodes.push_back(std::move(r));
  if (Cancelled()) return;
  for (int ei : w_.out_edges(i)) {
    const Workflow::Edge& e = w_.edges()[static_cast<size_t>(ei)];
    bool taken;
    if (c.fail_branch) {
      taken = e.branch == "fail";
    } else if (e.branch == "fail") {
      taken = false;
    } else if (branching) {
      taken = e.branch == branch;
    } else {
      taken = true;
    }
    Resolve(e.to, taken, i);
  }
}

void Run::Execute(Json inputs) {
  const WorkflowSpec& spec = w_.spec();
  const double timeout_s = o_.timeout_s > 0 ? o_.timeout_s : spec.timeout_s;
  deadline_ =
      t0_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  std::ostringstream timeout_error;
  timeout_error << "the run timed out: it passed its timeout of " << timeout_s << " s";
  timeout_error_ = timeout_error.str();
  const size_t n = static_cast<size_t>(w_.num_nodes());
  num_resolved_.assign(n, 0);
  num_taken_.assign(n, 0);
  preds_.assign(n, {});
  Json sys = {{"run_id", result_->run_id}, {"user", o_.user}, {"workflow", spec.name}};
  for (auto it = o_.sys_extra.begin(); it != o_.sys_extra.end(); ++it) sys[it.key()] = it.value();
  vars_ = {{"inputs", inputs}, {"nodes", Json::object()}, {"sys", std::move(sys)}};
  Emit("workflow_started", {{"workflow", spec.name}, {"inputs", inputs}});

  // An outside cancellation reaches the nodes through the run's own flag (their I/O watches it).
  std::atomic<bool> finished{false};
  std::thread watcher;
  if (o_.cancel != nullptr) {
    watcher = std::thread([this, &finished] {
      while (!finished.load()) {
        if (o_.cancel->load() && !cancelled_.load()) {
          std::lock_guard<std::mutex> lock(mu_);
          outside_cancel_ = true;
          cancelled_ = true;
          cv_.notify_one();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ready_.push_back(w_.start());
  int running = 0;
  std::vector<std::thread> threads;
  while (true) {
    if (o_.cancel != nullptr && o_.cancel->load()) Fail("cancelled", "the run was cancelled");
    while (!ready_.empty() && !Cancelled()) {
      const int i = ready_.front();
      ready_.pop_front();
      if (ready_.empty() && running == 0) {
        // The only runnable node: run it here (no thread hand-off).
        Decide(RunNode(i, vars_, preds_[static_cast<size_t>(i)]));
        continue;
      }
      ++running;
      try {
        threads.emplace_back(
            [this, i, vars = vars_, preds = preds_[static_cast<size_t>(i)]]() mutable {
              Completion c = RunNode(i, vars, std::move(preds));
              std::lock_guard<std::mutex> lock(mu_);
              done_.push_back(std::move(c));
              cv_.notify_one();
            });
      } catch (const std::system_error&) {
        // No thread to be had (EAGAIN): the branch runs here, one after the other.
        --running;
        Decide(RunNode(i, vars_, preds_[static_cast<size_t>(i)]));
      }
    }
    if (running == 0) break;
    std::unique_lock<std::mutex> lock(mu_);
    const auto wake = std::min(deadline_, Clock::now() + std::chrono::milliseconds(20));
    cv_.wait_until(lock, wake, [this] { return !done_.empty(); });
    std::deque<Completion> batch;
    batch.swap(done_);
    lock.unlock();
    if (batch.empty() && PastDeadline() && !Cancelled()) Fail("failed", timeout_error_);
    for (auto& c : batch) {
      --running;
      Decide(std::move(c));
    }
  }
  for (auto& t : threads) t.join();
  finished = true;
  if (watcher.joinable()) watcher.join();
  if (outside_cancel_) Fail("cancelled", "the run was cancelled");
  if (result_->status.empty()) result_->status = "succeeded";
  result_->num_steps = std::min(num_steps_.load(), spec.max_steps);
  result_->duration_ms = MsSince(t0_);
  Emit("workflow_finished", result_->ToJson(/*with_trace=*/false));
}

}  // namespace

std::string NewRunId() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt =
      (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  char buf[48];
  std::snprintf(buf, sizeof(buf), "run-%012llx%06llx",
                static_cast<unsigned long long>(salt & 0xffffffffffffULL),
                static_cast<unsigned long long>(counter++ & 0xffffff));
  return buf;
}

Json NodeRecord::ToJson() const {
  Json attempts_json = Json::array();
  for (const auto& a : attempts) {
    Json j = {{"variant", a.variant}, {"attempt", a.attempt}, {"duration_ms", a.duration_ms}};
    if (!a.error.empty()) j["error"] = a.error;
    attempts_json.push_back(std::move(j));
  }
  Json j = {{"node_id", node_id},       {"type", type},
            {"status", status},         {"path", path},
            {"started_ms", started_ms}, {"duration_ms", duration_ms},
            {"num_tokens", num_tokens}, {"attempts", std::move(attempts_json)}};
  if (!error.empty()) j["error"] = error;
  if (!input.is_null()) j["input"] = input;
  if (!output.is_null()) j["output"] = output;
  return j;
}

Json RunResult::ToJson(bool with_trace) const {
  Json j = {{"run_id", run_id},         {"status", status},
            {"outputs", outputs},       {"duration_ms", duration_ms},
            {"num_tokens", num_tokens}, {"num_fallbacks", num_fallbacks},
            {"num_steps", num_steps}};
  if (!error.empty()) j["error"] = error;
  if (with_trace) {
    j["inputs"] = inputs;
    Json nodes_json = Json::array();
    for (const auto& n : nodes) nodes_json.push_back(n.ToJson());
    j["nodes"] = std::move(nodes_json);
  }
  return j;
}

StatusOr<Json> Executor::ResolveInputs(const WorkflowSpec& spec, const Json& inputs) {
  if (!inputs.is_object()) return Status::InvalidArgument("inputs must be an object");
  Json out = Json::object();
  for (const auto& in : spec.inputs) {
    if (inputs.contains(in.name) && !inputs[in.name].is_null()) {
      const std::string problem = CheckInputType(in, inputs[in.name]);
      if (!problem.empty()) return Status::InvalidArgument("input '" + in.name + "': " + problem);
      out[in.name] = inputs[in.name];
    } else if (in.has_default) {
      out[in.name] = in.default_value;
    } else if (in.required) {
      return Status::InvalidArgument("input '" + in.name + "' is required");
    } else {
      out[in.name] = nullptr;
    }
  }
  for (auto it = inputs.begin(); it != inputs.end(); ++it) {
    bool declared = false;
    for (const auto& in : spec.inputs) declared = declared || in.name == it.key();
    if (!declared) {
      if (!spec.inputs.empty()) {
        return Status::InvalidArgument("input '" + it.key() + "' is not declared by the workflow");
      }
      out[it.key()] = it.value();
    }
  }
  return out;
}

RunResult Executor::Run(const Workflow& workflow, RunOptions options) const {
  RunResult result;
  result.run_id = options.run_id.empty() ? NewRunId() : options.run_id;
  auto inputs = ResolveInputs(workflow.spec(), options.inputs);
  if (!inputs.ok()) {
    result.status = "failed";
    result.error = inputs.status().message();
    result.inputs = options.inputs;
    if (options.on_event) {
      options.on_event(WorkflowEvent{"workflow_finished", result.ToJson(false)});
    }
    return result;
  }
  result.inputs = *inputs;
  class Run run(workflow, services_, options, &result);
  run.Execute(std::move(*inputs));
  return result;
}

}  // namespace kiln::workflow
