#include "workflow/run_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

namespace kiln::workflow {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A prepared statement that finalizes itself; Bind* take 1-based indices.
class Stmt final {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &st_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt& Text(int i, const std::string& s) {
    sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& Real(int i, double v) {
    sqlite3_bind_double(st_, i, v);
    return *this;
  }
  // SQLITE_ROW / SQLITE_DONE, or an error code.
  int Step() { return rc_ == SQLITE_OK ? sqlite3_step(st_) : rc_; }
  Status Run() {
    const int rc = Step();
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      return Status::IOError(std::string("workflow store: ") + sqlite3_errmsg(db_));
    return Status::Ok();
  }
  std::string ColText(int i) {
    const auto* p = sqlite3_column_text(st_, i);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(st_, i)))
             : "";
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(st_, i); }
  double ColReal(int i) { return sqlite3_column_double(st_, i); }
  Json ColJson(int i) {
    Json j = Json::parse(ColText(i), nullptr, false);
    return j.is_discarded() ? Json() : j;
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  int rc_;
};

Status NoWorkflow(const std::string& name) {
  return Status::NotFound("no workflow named '" + name + "'");
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  // Final avalanche (splitmix64) so that nearby keys spread evenly.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

Json SplitToJson(const std::vector<SplitEntry>& split) {
  Json a = Json::array();
  for (const auto& e : split) a.push_back({{"version", e.version}, {"weight", e.weight}});
  return a;
}

std::vector<SplitEntry> SplitFromJson(const Json& j) {
  std::vector<SplitEntry> out;
  if (!j.is_array()) return out;
  for (const auto& e : j) out.push_back({e.value("version", 0), e.value("weight", 0.0)});
  return out;
}

}  // namespace

Json WorkflowInfo::ToJson() const {
  return {{"name", name},
          {"current_version", current_version},
          {"num_versions", num_versions},
          {"split", SplitToJson(split)},
          {"updated_at", updated_at},
          {"draft", draft}};
}

StatusOr<std::unique_ptr<RunStore>> RunStore::Open(const std::string& path, int* num_recovered) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IOError("cannot open workflow store '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<RunStore> store(new RunStore(db));
  KILN_RETURN_IF_ERROR(store->Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
      "CREATE TABLE IF NOT EXISTS workflows (name TEXT PRIMARY KEY, draft TEXT NOT NULL,"
      "  current_version INTEGER NOT NULL DEFAULT 0, split TEXT NOT NULL DEFAULT '[]',"
      "  created_at REAL, updated_at REAL);"
      "CREATE TABLE IF NOT EXISTS versions (workflow TEXT NOT NULL, version INTEGER NOT NULL,"
      "  spec TEXT NOT NULL, note TEXT, created_at REAL, PRIMARY KEY (workflow, version));"
      "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL,"
      "  version INTEGER NOT NULL, status TEXT NOT NULL, user TEXT, inputs TEXT, outputs TEXT,"
      "  error TEXT, started_at REAL, finished_at REAL, duration_ms REAL, num_tokens INTEGER,"
      "  num_fallbacks INTEGER);"
      "CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, started_at);"
      "CREATE TABLE IF NOT EXISTS node_runs (run_id TEXT NOT NULL, seq INTEGER NOT NULL,"
      "  node_id TEXT NOT NULL, status TEXT, path TEXT, duration_ms REAL, num_tokens INTEGER,"
      "  record TEXT NOT NULL, PRIMARY KEY (run_id, seq));"));
  Stmt recover(db,
               "UPDATE runs SET status = 'failed', error = 'interrupted: the server stopped while "
               "the run was in progress', finished_at = ? WHERE status = 'running'");
  recover.Real(1, Now());
  KILN_RETURN_IF_ERROR(recover.Run());
  if (num_recovered != nullptr) *num_recovered = sqlite3_changes(db);
  return store;
}

RunStore::~RunStore() { sqlite3_close(db_); }

Status RunStore::Exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : "?";
    sqlite3_free(err);
    return Status::IOError("workflow store: " + msg);
  }
  return Status::Ok();
}

Status RunStore::Save(const std::string& name, const Json& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(
      db_,
      "INSERT INTO workflows (name, draft, created_at, updated_at) VALUES (?, ?, ?, ?) "
      "ON CONFLICT(name) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at");
  const double now = Now();
  s.Text(1, name).Text(2, spec.dump()).Real(3, now).Real(4, now);
  return s.Run();
}

StatusOr<WorkflowInfo> RunStore::Get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT name, draft, current_version, split, updated_at, "
         "(SELECT COUNT(*) FROM versions v WHERE v.workflow = w.name) FROM workflows w WHERE name "
         "= ?");
  s.Text(1, name);
  if (s.Step() != SQLITE_ROW) return NoWorkflow(name);
  WorkflowInfo w;
  w.name = s.ColText(0);
  w.draft = s.ColJson(1);
  w.current_version = static_cast<int>(s.ColInt(2));
  w.split = SplitFromJson(s.ColJson(3));
  w.updated_at = s.ColReal(4);
  w.num_versions = static_cast<int>(s.ColInt(5));
  return w;
}

StatusOr<std::vector<WorkflowInfo>> RunStore::List() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Stmt s(db_, "SELECT name FROM workflows ORDER BY name");
    while (s.Step() == SQLITE_ROW) names.push_back(s.ColText(0));
  }
  std::vector<WorkflowInfo> out;
  for (const auto& n : names) {
    KILN_ASSIGN_OR_RETURN(WorkflowInfo w, Get(n));
    out.push_back(std::move(w));
  }
  return out;
}

StatusOr<int> RunStore::Publish(const std::string& name, const std::string& note) {
  std::lock_guard<std::mutex> lock(mu_);
  KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto fail = [&](Status s) {
    (void)Exec("ROLLBACK");
    return s;
  };
  Stmt get(db_, "SELECT draft FROM workflows WHERE name = ?");
  get.Text(1, name);
  if (get.Step() != SQLITE_ROW) return fail(NoWorkflow(name));
  const std::string draft = get.ColText(0);
  Stmt max(db_, "SELECT COALESCE(MAX(version), 0) FROM versions WHERE workflow = ?");
  max.Text(1, name);
  max.Step();
  const int version = static_cast<int>(max.ColInt(0)) + 1;
  Stmt ins(
      db_,
      "INSERT INTO versions (workflow, version, spec, note, created_at) VALUES (?, ?, ?, ?, ?)");
  ins.Text(1, name).Int(2, version).Text(3, draft).Text(4, note).Real(5, Now());
  if (Status s = ins.Run(); !s.ok()) return fail(s);
  Stmt cur(db_,
           "UPDATE workflows SET current_version = ?, split = '[]', updated_at = ? WHERE name = ?");
  cur.Int(1, version).Real(2, Now()).Text(3, name);
  if (Status s = cur.Run(); !s.ok()) return fail(s);
  KILN_RETURN_IF_ERROR(Exec("COMMIT"));
  return version;
}

StatusOr<std::vector<VersionInfo>> RunStore::Versions(const std::string& name) {
  KILN_ASSIGN_OR_RETURN(WorkflowInfo w, Get(name));
  (void)w;
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(
      db_,
      "SELECT version, spec, created_at, note FROM versions WHERE workflow = ? ORDER BY version");
  s.Text(1, name);
  std::vector<VersionInfo> out;
  while (s.Step() == SQLITE_ROW) {
    out.push_back({static_cast<int>(s.ColInt(0)), s.ColJson(1), s.ColReal(2), s.ColText(3)});
  }
  return out;
}

StatusOr<VersionInfo> RunStore::Version(const std::string& name, int version) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT version, spec, created_at, note FROM versions WHERE workflow = ? AND version = ?");
  s.Text(1, name).Int(2, version);
  if (s.Step() != SQLITE_ROW) {
    return Status::NotFound("workflow '" + name + "' has no version " + std::to_string(version));
  }
  return VersionInfo{static_cast<int>(s.ColInt(0)), s.ColJson(1), s.ColReal(2), s.ColText(3)};
}

Status RunStore::Rollback(const std::string& name, int version) {
  KILN_ASSIGN_OR_RETURN(VersionInfo v, Version(name, version));
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "UPDATE workflows SET current_version = ?, split = '[]', updated_at = ? WHERE name = ?");
  s.Int(1, v.version).Real(2, Now()).Text(3, name);
  return s.Run();
}

Status RunStore::SetSplit(const std::string& name, const std::vector<SplitEntry>& split) {
  KILN_ASSIGN_OR_RETURN(WorkflowInfo w, Get(name));
  std::map<int, bool> seen;
  for (const auto& e : split) {
    if (!(e.weight > 0)) return Status::InvalidArgument("split weights must be > 0");
    if (seen[e.version])
      return Status::InvalidArgument("version " + std::to_string(e.version) +
                                     " appears twice in the split");
    seen[e.version] = true;
    if (e.version < 1 || e.version > w.num_versions) {
      return Status::InvalidArgument("version " + std::to_string(e.version) + " is not published");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "UPDATE workflows SET split = ?, updated_at = ? WHERE name = ?");
  s.Text(1, SplitToJson(split).dump()).Real(2, Now()).Text(3, name);
  return s.Run();
}

int RunStore::Pick(const std::vector<SplitEntry>& split, const std::string& workflow,
                   const std::string& user) {
  double total = 0;
  for (const auto& e : split) total += e.weight;
  uint64_t key;
  if (user.empty()) {  // no key to stick to: every run draws afresh
    thread_local std::mt19937_64 rng(std::random_device{}());
    key = rng();
  } else {
    key = Fnv1a(workflow + "\x1f" + user);
  }
  const double u = static_cast<double>(key >> 11) * 0x1.0p-53;
  double acc = 0;
  for (const auto& e : split) {
    acc += e.weight / total;
    if (u < acc) return e.version;
  }
  return split.back().version;
}

StatusOr<int> RunStore::PickVersion(const std::string& name, const std::string& user) {
  KILN_ASSIGN_OR_RETURN(WorkflowInfo w, Get(name));
  if (!w.split.empty()) return Pick(w.split, name, user);
  if (w.current_version == 0) {
    return Status::FailedPrecondition("workflow '" + name +
                                      "' has no published version (publish it, or run the draft)");
  }
  return w.current_version;
}

Status RunStore::BeginRun(const std::string& run_id, const std::string& workflow, int version,
                          const std::string& user, const Json& inputs) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "INSERT INTO runs (run_id, workflow, version, status, user, inputs, started_at) "
         "VALUES (?, ?, ?, 'running', ?, ?, ?)");
  s.Text(1, run_id)
      .Text(2, workflow)
      .Int(3, version)
      .Text(4, user)
      .Text(5, inputs.dump())
      .Real(6, Now());
  return s.Run();
}

Status RunStore::AddNodeRecord(const std::string& run_id, const Json& r) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(
      db_,
      "INSERT INTO node_runs (run_id, seq, node_id, status, path, duration_ms, num_tokens, record) "
      "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM node_runs WHERE run_id = ?), ?, ?, ?, ?, "
      "?, ?)");
  s.Text(1, run_id)
      .Text(2, run_id)
      .Text(3, r.value("node_id", ""))
      .Text(4, r.value("status", ""))
      .Text(5, r.value("path", ""))
      .Real(6, r.value("duration_ms", 0.0))
      .Int(7, r.value("num_tokens", int64_t{0}))
      .Text(8, r.dump());
  return s.Run();
}

Status RunStore::FinishRun(const std::string& workflow, const RunResult& r) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "UPDATE runs SET status = ?, outputs = ?, error = ?, finished_at = ?, duration_ms = ?, "
         "num_tokens = ?, num_fallbacks = ? WHERE run_id = ? AND workflow = ?");
  s.Text(1, r.status)
      .Text(2, r.outputs.dump())
      .Text(3, r.error)
      .Real(4, Now())
      .Real(5, r.duration_ms)
      .Int(6, r.num_tokens)
      .Int(7, r.num_fallbacks)
      .Text(8, r.run_id)
      .Text(9, workflow);
  return s.Run();
}

namespace {
const char* kRunColumns =
    "run_id, workflow, version, status, user, inputs, outputs, error, started_at, finished_at, "
    "duration_ms, num_tokens, num_fallbacks";
Json RunRow(Stmt& s) {
  Json j = {{"run_id", s.ColText(0)},      {"workflow", s.ColText(1)},
            {"version", s.ColInt(2)},      {"status", s.ColText(3)},
            {"user", s.ColText(4)},        {"inputs", s.ColJson(5)},
            {"outputs", s.ColJson(6)},     {"started_at", s.ColReal(8)},
            {"finished_at", s.ColReal(9)}, {"duration_ms", s.ColReal(10)},
            {"num_tokens", s.ColInt(11)},  {"num_fallbacks", s.ColInt(12)}};
  const std::string error = s.ColText(7);
  if (!error.empty()) j["error"] = error;
  return j;
}
}  // namespace

StatusOr<Json> RunStore::GetRun(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kRunColumns + " FROM runs WHERE run_id = ?").c_str());
  s.Text(1, run_id);
  if (s.Step() != SQLITE_ROW) return Status::NotFound("no run with id '" + run_id + "'");
  Json run = RunRow(s);
  Stmt n(db_, "SELECT record FROM node_runs WHERE run_id = ? ORDER BY seq");
  n.Text(1, run_id);
  Json nodes = Json::array();
  while (n.Step() == SQLITE_ROW) nodes.push_back(n.ColJson(0));
  run["nodes"] = std::move(nodes);
  return run;
}

StatusOr<Json> RunStore::ListRuns(const std::string& workflow, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, (std::string("SELECT ") + kRunColumns +
               " FROM runs WHERE workflow = ? ORDER BY started_at DESC, rowid DESC LIMIT ?")
                  .c_str());
  s.Text(1, workflow).Int(2, limit);
  Json runs = Json::array();
  while (s.Step() == SQLITE_ROW) runs.push_back(RunRow(s));
  return runs;
}

StatusOr<Json> RunStore::Stats(const std::string& workflow) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT version, status, COALESCE(duration_ms, 0), COALESCE(num_tokens, 0), "
         "COALESCE(num_fallbacks, 0) FROM runs WHERE workflow = ? ORDER BY version");
  s.Text(1, workflow);
  struct Acc {
    int runs = 0, failed = 0, running = 0, with_fallback = 0;
    int64_t tokens = 0;
    std::vector<double> latency;
  };
  std::map<int, Acc> by_version;
  while (s.Step() == SQLITE_ROW) {
    Acc& a = by_version[static_cast<int>(s.ColInt(0))];
    const std::string status = s.ColText(1);
    ++a.runs;
    if (status == "failed" || status == "cancelled") ++a.failed;
    if (status == "running") {
      ++a.running;
      continue;
    }
    a.latency.push_back(s.ColReal(2));
    a.tokens += s.ColInt(3);
    if (s.ColInt(4) > 0) ++a.with_fallback;
  }
  Json out = Json::array();
  for (auto& [v, a] : by_version) {
    std::sort(a.latency.begin(), a.latency.end());
    auto pct = [&](double p) {
      if (a.latency.empty()) return 0.0;
      return a.latency[std::min(a.latency.size() - 1,
                                static_cast<size_t>(p * static_cast<double>(a.latency.size())))];
    };
    double sum = 0;
    for (double x : a.latency) sum += x;
    out.push_back(
        {{"version", v},
         {"runs", a.runs},
         {"failed", a.failed},
         {"running", a.running},
         {"runs_with_fallback", a.with_fallback},
         {"num_tokens", a.tokens},
         {"mean_latency_ms", a.latency.empty() ? 0.0 : sum / static_cast<double>(a.latency.size())},
         {"p50_latency_ms", pct(0.5)},
         {"p95_latency_ms", pct(0.95)}});
  }
  return out;
}

}  // namespace kiln::workflow
