// RunStore: SQLite (WAL) storage of workflows, their immutable published versions, the current
// version and A/B split of each, and runs with their node executions (inputs, outputs, timings,
// token counts, the path that produced each output).
//
// Versions: Save() replaces a workflow's draft; Publish() copies the draft into version N+1 (never
// modified afterwards) and makes it current; Rollback() makes an older version current; SetSplit()
// shares traffic between versions by weight, sticky by a user key (PickVersion hashes
// workflow + user, so one user always lands on the same version while the split stands; a run
// without a user draws a version at random). Publish() and Rollback() clear the split: choosing
// the current version is choosing where all traffic goes (set a new split afterwards if wanted).
//
// Crash safety: a run is inserted as "running" before it starts and each node execution is written
// when it finishes; Open() marks runs still "running" (cut off by a crash or kill) as failed —
// nothing else is touched. Every write is its own transaction (WAL: readers never block).
//
// Thread-safety: all methods may be called from many threads at once (one connection, a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "workflow/executor.h"
#include "workflow/spec.h"

struct sqlite3;

namespace kiln::workflow {

struct SplitEntry {
  int version = 0;
  double weight = 0;
};

struct WorkflowInfo {
  std::string name;
  Json draft;               // the spec document as last saved
  int current_version = 0;  // 0: nothing published
  int num_versions = 0;
  std::vector<SplitEntry> split;  // empty: all traffic to current_version
  double updated_at = 0;
  Json ToJson() const;
};

struct VersionInfo {
  int version = 0;
  Json spec;
  double created_at = 0;
  std::string note;
};

class RunStore final {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" allowed) and marks interrupted
  // runs failed; *num_recovered (if given) receives how many.
  static StatusOr<std::unique_ptr<RunStore>> Open(const std::string& path,
                                                  int* num_recovered = nullptr);
  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  Status Save(const std::string& name, const Json& spec);
  StatusOr<WorkflowInfo> Get(const std::string& name);
  StatusOr<std::vector<WorkflowInfo>> List();
  StatusOr<int> Publish(const std::string& name, const std::string& note);
  StatusOr<std::vector<VersionInfo>> Versions(const std::string& name);
  StatusOr<VersionInfo> Version(const std::string& name, int version);
  Status Rollback(const std::string& name, int version);
  // Weights must be > 0, versions published and distinct; an empty split clears it.
  Status SetSplit(const std::string& name, const std::vector<SplitEntry>& split);
  // The version a run for `user` gets: the split's pick (sticky by user; random for an empty
  // user) or the current version.
  StatusOr<int> PickVersion(const std::string& name, const std::string& user);

  Status BeginRun(const std::string& run_id, const std::string& workflow, int version,
                  const std::string& user, const Json& inputs);
  Status AddNodeRecord(const std::string& run_id, const Json& record);  // NodeRecord::ToJson()
  Status FinishRun(const std::string& workflow, const RunResult& result);
  // The run with its node trace ({..., nodes: [...]}).
  StatusOr<Json> GetRun(const std::string& run_id);
  StatusOr<Json> ListRuns(const std::string& workflow, int limit);
  // Per version: runs, failed, fallbacks, mean/p50/p95 latency, tokens.
  StatusOr<Json> Stats(const std::string& workflow);

  // The split's pick for a user (exposed for tests): weights over a 64-bit hash of workflow+user,
  // or over a random draw when `user` is empty.
  static int Pick(const std::vector<SplitEntry>& split, const std::string& workflow,
                  const std::string& user);

 private:
  explicit RunStore(sqlite3* db) : db_(db) {}
  Status Exec(const std::string& sql);
  sqlite3* db_;
  std::mutex mu_;
  std::atomic<int> seq_{0};
};

}  // namespace kiln::workflow
