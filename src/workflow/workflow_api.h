// WorkflowApi: the workflow endpoints of `kiln serve`, mounted through OpenAiServer's extra
// routes (so the API key check and error format are the server's):
//   POST /v1/workflows                        {spec | yaml[, name]} → save the draft (validated)
//   GET  /v1/workflows                        list
//   GET  /v1/workflows/{name}                 draft, current version, split
//   POST /v1/workflows/{name}/publish         {note} → {version}: an immutable version, now current
//                                              (clears the split, as rollback does)
//   GET  /v1/workflows/{name}/versions        versions with per-version stats
//   GET  /v1/workflows/{name}/versions/{v}    one version's spec
//   GET  /v1/workflows/{name}/diff?from=A&to=B  structural diff (A, B: versions or "draft")
//   POST /v1/workflows/{name}/rollback        {version}: make an older version current and the
//                                              only one served (clears the split)
//   POST /v1/workflows/{name}/split           {split: [{version, weight}]} ([] clears it)
//   GET  /v1/workflows/{name}/route?user=U    the version a run for U would get (no U: a random
//                                              draw from the split, as for runs without a user)
//   POST /v1/workflows/{name}/runs            {inputs, user, version ("draft" allowed), stream,
//                                              timeout_s} → the run (blocking) or SSE events
//   GET  /v1/workflows/{name}/runs?limit=N    recent runs
//   GET  /v1/workflows/{name}/stats           per-version latency, tokens, errors, fallbacks
//   GET  /v1/runs/{run_id}                    a run with its node trace
// Errors are OpenAI-style JSON (400 for invalid specs and inputs, naming node and field, for
// fields of the wrong type and for bodies nesting past server::kMaxJsonDepth; 404 for unknown
// workflows, versions and runs; 500 if handling a request throws, which never ends the process).
//
// Runs execute on the API's own worker threads, never on an HTTP I/O thread; a streaming client
// that disconnects cancels its run. Every run and node execution is written to the RunStore as it
// happens, so a crash leaves the run marked failed at the next start (RunStore::Open).
//
// Thread-safety: Handle() may be called from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "server/http_server.h"
#include "workflow/executor.h"
#include "workflow/run_store.h"
#include "workflow/services.h"

namespace kiln::workflow {

struct WorkflowApiOptions {
  std::string db_path = ":memory:";  // SQLite file of workflows, versions and runs
  int num_run_threads = 8;           // runs in flight at once (more wait in a queue)
  ServicesOptions services;
  Status Validate() const;
};

class WorkflowApi final {
 public:
  static StatusOr<std::unique_ptr<WorkflowApi>> Create(WorkflowApiOptions options);
  ~WorkflowApi();  // Shutdown()
  WorkflowApi(const WorkflowApi&) = delete;
  WorkflowApi& operator=(const WorkflowApi&) = delete;

  void Handle(const server::HttpRequest& request, std::shared_ptr<server::HttpResponder> responder);
  // Cancels the runs in flight and waits for them (their records are finished as cancelled).
  void Shutdown();
  int num_recovered_runs() const { return num_recovered_; }

  class Pool;

 private:
  WorkflowApi(WorkflowApiOptions options, std::unique_ptr<RunStore> store);
  StatusOr<std::shared_ptr<const Workflow>> Compiled(const std::string& name, int version,
                                                     const Json& doc);
  void Route(const server::HttpRequest& request, std::shared_ptr<server::HttpResponder> responder);
  void StartRun(const std::string& name, const Json& body,
                std::shared_ptr<server::HttpResponder> responder);

  WorkflowApiOptions options_;
  std::unique_ptr<RunStore> store_;
  Services services_;
  Executor executor_;
  int num_recovered_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::pair<std::string, int>, std::shared_ptr<const Workflow>> cache_;  // published only
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> active_;  // run_id → cancel flag
  std::unique_ptr<Pool> pool_;                                        // last: joined first
};

}  // namespace kiln::workflow
