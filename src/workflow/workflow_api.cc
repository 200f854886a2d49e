#include "workflow/workflow_api.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <optional>

#include "common/logging.h"
#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "workflow/spec_diff.h"
#include "workflow/workflow.h"

namespace kiln::workflow {

class WorkflowApi::Pool final {
 public:
  explicit Pool(int n) : pool_(static_cast<size_t>(std::max(1, n))) {}
  void Post(std::function<void()> fn) { boost::asio::post(pool_, std::move(fn)); }
  void Join() { pool_.join(); }

 private:
  boost::asio::thread_pool pool_;
};

namespace {

using server::ApiError;
using server::HttpResponder;

void SendJson(HttpResponder& r, int status, const Json& body) {
  r.Send(status, "application/json", body.dump());
}
void SendError(HttpResponder& r, const ApiError& e) {
  r.Send(e.http_status, "application/json", e.ToJson());
}
void SendStatus(HttpResponder& r, const Status& s, const std::string& param = "") {
  ApiError e = ApiError::FromStatus(s, param);
  // The state of a workflow (e.g. nothing published yet) is the caller's to fix, not a 503.
  if (s.code() == StatusCode::kFailedPrecondition) e.http_status = 400;
  SendError(r, e);
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t pos = 1;
  while (pos <= path.size()) {
    const size_t slash = path.find('/', pos);
    const std::string part =
        path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (!part.empty()) parts.push_back(part);
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  return parts;
}

std::string UrlDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string Query(const std::string& target, const std::string& key) {
  const size_t q = target.find('?');
  if (q == std::string::npos) return "";
  size_t pos = q + 1;
  while (pos < target.size()) {
    size_t amp = target.find('&', pos);
    if (amp == std::string::npos) amp = target.size();
    const std::string kv = target.substr(pos, amp - pos);
    const size_t eq = kv.find('=');
    if (kv.substr(0, eq) == key) return eq == std::string::npos ? "" : UrlDecode(kv.substr(eq + 1));
    pos = amp + 1;
  }
  return "";
}

StatusOr<int> ParseVersion(const std::string& s) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 1)
    return Status::InvalidArgument("'" + s + "' is not a version number");
  return static_cast<int>(v);
}

// Optional body fields: absent or null leave *out unchanged; a value of another type is a 400
// naming the field (never a JSON type_error on a worker thread).
std::optional<ApiError> WrongType(const char* name, const char* expected, const Json& got) {
  return ApiError::BadRequest(
      "'" + std::string(name) + "' must be " + expected + ", got " + got.type_name(), name);
}
std::optional<ApiError> ReadString(const Json& body, const char* name, std::string* out) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return WrongType(name, "a string", *it);
  *out = it->get<std::string>();
  return std::nullopt;
}
std::optional<ApiError> ReadBool(const Json& body, const char* name, bool* out) {
  const auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return WrongType(name, "a boolean", *it);
  *out = it->get<bool>();
  return std::nullopt;
}

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 100) return false;
  for (char c : n) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return true;
}

}  // namespace

Status WorkflowApiOptions::Validate() const {
  if (num_run_threads < 1 || num_run_threads > 1024) {
    return Status::InvalidArgument("workflow run threads must be in [1, 1024]");
  }
  return services.Validate();
}

StatusOr<std::unique_ptr<WorkflowApi>> WorkflowApi::Create(WorkflowApiOptions options) {
  KILN_RETURN_IF_ERROR(options.Validate());
  int recovered = 0;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<RunStore> store,
                        RunStore::Open(options.db_path, &recovered));
  std::unique_ptr<WorkflowApi> api(new WorkflowApi(std::move(options), std::move(store)));
  api->num_recovered_ = recovered;
  return api;
}

WorkflowApi::WorkflowApi(WorkflowApiOptions options, std::unique_ptr<RunStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      services_(options_.services),
      executor_(&services_),
      pool_(std::make_unique<Pool>(options_.num_run_threads)) {}

WorkflowApi::~WorkflowApi() { Shutdown(); }

void WorkflowApi::Shutdown() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, flag] : active_) *flag = true;
  }
  pool_->Join();
}

StatusOr<std::shared_ptr<const Workflow>> WorkflowApi::Compiled(const std::string& name,
                                                                int version, const Json& doc) {
  if (version > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find({name, version});
    if (it != cache_.end()) return it->second;
  }
  KILN_ASSIGN_OR_RETURN(WorkflowSpec spec, SpecFromJson(doc));
  KILN_ASSIGN_OR_RETURN(std::shared_ptr<const Workflow> w, Workflow::Compile(std::move(spec)));
  if (version > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cache_[{name, version}] = w;
  }
  return w;
}

void WorkflowApi::Handle(const server::HttpRequest& request,
                         std::shared_ptr<HttpResponder> responder) {
  // Off the I/O thread: SQLite and spec compiles may take milliseconds. Nothing a request does may
  // escape this thread (an exception here would terminate the server): the catch-all answers 500.
  pool_->Post([this, request, responder] {
    try {
      Route(request, responder);
    } catch (const std::exception& e) {
      KILN_LOG(ERROR) << "workflow API: " << request.method << " " << request.path
                      << " threw: " << e.what();
      SendStatus(*responder, Status::Internal("internal error while handling the request"));
    }
  });
}

void WorkflowApi::Route(const server::HttpRequest& req, std::shared_ptr<HttpResponder> r) {
  const std::vector<std::string> p = SplitPath(req.path);  // v1, workflows|runs, ...
  const std::string& m = req.method;
  Json body = Json::object();
  if (m == "POST" && !req.body.empty()) {
    // Bounded before parsing, as the OpenAI routes (issue 18): nothing later recurses unbounded.
    if (server::JsonNestingDepth(req.body, server::kMaxJsonDepth) > server::kMaxJsonDepth) {
      return SendError(
          *r, ApiError::BadRequest("the request body nests arrays/objects more than " +
                                   std::to_string(server::kMaxJsonDepth) + " levels deep"));
    }
    body = Json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return SendError(*r, ApiError::BadRequest("the request body must be a JSON object"));
    }
  }
  auto not_found = [&] {
    SendError(*r, ApiError::NotFound("no route for " + m + " " + req.path, "route_not_found"));
  };
  if (p.size() == 3 && p[1] == "runs" && m == "GET") {
    auto run = store_->GetRun(p[2]);
    return run.ok() ? SendJson(*r, 200, *run) : SendStatus(*r, run.status());
  }
  if (p.size() < 2 || p[1] != "workflows") return not_found();
  if (p.size() == 2) {
    if (m == "GET") {
      auto list = store_->List();
      if (!list.ok()) return SendStatus(*r, list.status());
      Json data = Json::array();
      for (const auto& w : *list) {
        Json j = w.ToJson();
        j.erase("draft");
        data.push_back(std::move(j));
      }
      return SendJson(*r, 200, {{"object", "list"}, {"data", std::move(data)}});
    }
    if (m != "POST") return not_found();
    Json doc;
    if (body.contains("spec") && body["spec"].is_object()) {
      doc = body["spec"];
    } else if (body.contains("yaml") && body["yaml"].is_string()) {
      auto parsed = ParseDocument(body["yaml"].get<std::string>());
      if (!parsed.ok()) return SendStatus(*r, parsed.status(), "yaml");
      doc = std::move(*parsed);
    } else {
      return SendError(*r, ApiError::BadRequest(
                               "give the workflow as 'spec' (an object) or 'yaml' (text)", "spec"));
    }
    std::string name;
    if (doc.is_object() && doc.contains("name") && doc["name"].is_string()) {
      name = doc["name"].get<std::string>();
    }
    if (auto e = ReadString(body, "name", &name)) return SendError(*r, *e);
    if (!ValidName(name)) {
      return SendError(
          *r, ApiError::BadRequest(
                  "a workflow name (letters, digits, - _ .) is required in 'name' or the spec",
                  "name"));
    }
    auto compiled = Compiled(name, 0, doc);
    if (!compiled.ok()) return SendStatus(*r, compiled.status(), "spec");
    if (Status s = store_->Save(name, doc); !s.ok()) return SendStatus(*r, s);
    auto info = store_->Get(name);
    return info.ok() ? SendJson(*r, 201, info->ToJson()) : SendStatus(*r, info.status());
  }
  const std::string name = p[2];
  auto info = store_->Get(name);
  if (!info.ok()) return SendStatus(*r, info.status());
  const std::string action = p.size() > 3 ? p[3] : "";
  if (action.empty() && m == "GET") return SendJson(*r, 200, info->ToJson());
  if (action == "publish" && m == "POST") {
    std::string note;
    if (auto e = ReadString(body, "note", &note)) return SendError(*r, *e);
    auto v = store_->Publish(name, note);
    if (!v.ok()) return SendStatus(*r, v.status());
    return SendJson(*r, 200, {{"name", name}, {"version", *v}, {"current_version", *v}});
  }
  if (action == "versions" && m == "GET") {
    if (p.size() == 5) {
      auto v = ParseVersion(p[4]);
      if (!v.ok()) return SendStatus(*r, v.status());
      auto ver = store_->Version(name, *v);
      if (!ver.ok()) return SendStatus(*r, ver.status());
      return SendJson(*r, 200,
                      {{"version", ver->version},
                       {"created_at", ver->created_at},
                       {"note", ver->note},
                       {"spec", ver->spec}});
    }
    auto versions = store_->Versions(name);
    if (!versions.ok()) return SendStatus(*r, versions.status());
    auto stats = store_->Stats(name);
    Json data = Json::array();
    for (const auto& v : *versions) {
      Json j = {{"version", v.version},
                {"created_at", v.created_at},
                {"note", v.note},
                {"current", v.version == info->current_version}};
      if (stats.ok()) {
        for (const auto& s : *stats) {
          if (s["version"] == v.version) j["stats"] = s;
        }
      }
      data.push_back(std::move(j));
    }
    return SendJson(*r, 200, {{"object", "list"}, {"data", std::move(data)}});
  }
  if (action == "diff" && m == "GET") {
    Json docs[2];
    const std::string which[2] = {Query(req.target, "from"), Query(req.target, "to")};
    for (int i = 0; i < 2; ++i) {
      if (which[i] == "draft") {
        docs[i] = info->draft;
        continue;
      }
      auto v = ParseVersion(which[i]);
      if (!v.ok()) return SendStatus(*r, v.status(), i == 0 ? "from" : "to");
      auto ver = store_->Version(name, *v);
      if (!ver.ok()) return SendStatus(*r, ver.status(), i == 0 ? "from" : "to");
      docs[i] = ver->spec;
    }
    Json d = DiffSpecs(docs[0], docs[1]);
    d["from"] = which[0];
    d["to"] = which[1];
    return SendJson(*r, 200, d);
  }
  if (action == "rollback" && m == "POST") {
    if (!body.contains("version") || !body["version"].is_number_integer()) {
      return SendError(*r, ApiError::BadRequest("'version' (an integer) is required", "version"));
    }
    if (Status s = store_->Rollback(name, body["version"].get<int>()); !s.ok())
      return SendStatus(*r, s, "version");
    return SendJson(*r, 200, {{"name", name}, {"current_version", body["version"]}});
  }
  if (action == "split" && m == "POST") {
    std::vector<SplitEntry> split;
    const Json s = body.value("split", Json::array());
    if (!s.is_array())
      return SendError(
          *r, ApiError::BadRequest("'split' must be a list of {version, weight}", "split"));
    for (const auto& e : s) {
      if (!e.is_object() || !e.contains("version") || !e["version"].is_number_integer() ||
          !e.contains("weight") || !e["weight"].is_number()) {
        return SendError(*r, ApiError::BadRequest(
                                 "'split' entries are {version: int, weight: number}", "split"));
      }
      split.push_back({e["version"].get<int>(), e["weight"].get<double>()});
    }
    if (Status st = store_->SetSplit(name, split); !st.ok()) return SendStatus(*r, st, "split");
    return SendJson(*r, 200, {{"name", name}, {"split", s}});
  }
  if (action == "route" && m == "GET") {
    auto v = store_->PickVersion(name, Query(req.target, "user"));
    if (!v.ok()) return SendStatus(*r, v.status());
    return SendJson(*r, 200, {{"name", name}, {"version", *v}});
  }
  if (action == "stats" && m == "GET") {
    auto stats = store_->Stats(name);
    if (!stats.ok()) return SendStatus(*r, stats.status());
    return SendJson(*r, 200, {{"name", name}, {"versions", *stats}});
  }
  if (action == "runs" && m == "GET") {
    int limit = std::atoi(Query(req.target, "limit").c_str());
    if (limit <= 0 || limit > 1000) limit = 50;
    auto runs = store_->ListRuns(name, limit);
    if (!runs.ok()) return SendStatus(*r, runs.status());
    return SendJson(*r, 200, {{"object", "list"}, {"data", *runs}});
  }
  if (action == "runs" && m == "POST") return StartRun(name, body, r);
  not_found();
}

void WorkflowApi::StartRun(const std::string& name, const Json& body,
                           std::shared_ptr<HttpResponder> r) {
  if (stopping_) return SendStatus(*r, Status::Unavailable("the server is shutting down"));
  std::string user;
  if (auto e = ReadString(body, "user", &user)) return SendError(*r, *e);
  bool stream = false;
  if (auto e = ReadBool(body, "stream", &stream)) return SendError(*r, *e);
  double timeout_s = 0;  // 0: the spec's limits.timeout_s
  if (body.contains("timeout_s") && !body["timeout_s"].is_null()) {
    const Json& t = body["timeout_s"];
    if (!t.is_number() || !(t.get<double>() > 0) || t.get<double>() > 86400) {
      return SendError(
          *r, ApiError::BadRequest("'timeout_s' must be a number in (0, 86400]", "timeout_s"));
    }
    timeout_s = t.get<double>();
  }
  const Json inputs = body.value("inputs", Json::object());
  if (!inputs.is_object())
    return SendError(*r, ApiError::BadRequest("'inputs' must be an object", "inputs"));
  int version = 0;
  Json doc;
  const Json v = body.value("version", Json());
  if (v.is_string() && v == "draft") {
    auto info = store_->Get(name);
    if (!info.ok()) return SendStatus(*r, info.status());
    doc = info->draft;
  } else {
    if (v.is_number_integer()) {
      version = v.get<int>();
    } else if (v.is_null()) {
      auto picked = store_->PickVersion(name, user);
      if (!picked.ok()) return SendStatus(*r, picked.status(), "version");
      version = *picked;
    } else {
      return SendError(
          *r, ApiError::BadRequest("'version' must be a version number or \"draft\"", "version"));
    }
    auto ver = store_->Version(name, version);
    if (!ver.ok()) return SendStatus(*r, ver.status(), "version");
    doc = ver->spec;
  }
  auto w = Compiled(name, version, doc);
  if (!w.ok()) return SendStatus(*r, w.status());
  auto resolved = Executor::ResolveInputs((*w)->spec(), inputs);
  if (!resolved.ok()) return SendStatus(*r, resolved.status(), "inputs");

  const std::string run_id = NewRunId();
  if (Status s = store_->BeginRun(run_id, name, version, user, *resolved); !s.ok())
    return SendStatus(*r, s);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_[run_id] = cancel;
  }
  RunOptions o;
  o.run_id = run_id;
  o.inputs = *resolved;
  o.user = user;
  o.sys_extra = {{"version", version}};
  o.cancel = cancel.get();
  o.timeout_s = timeout_s;
  if (stream) {
    r->StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    r->OnDisconnect([cancel] { *cancel = true; });
  }
  o.on_event = [this, r, stream, run_id](const WorkflowEvent& e) {
    if (e.type == "node_finished") (void)store_->AddNodeRecord(run_id, e.data);
    if (stream) r->Write("event: " + e.type + "\ndata: " + e.data.dump() + "\n\n");
  };
  RunResult result;
  try {
    result = executor_.Run(**w, std::move(o));
  } catch (const std::exception& e) {  // a bug, not the caller's: the run is recorded as failed
    KILN_LOG(ERROR) << "workflow run " << run_id << " threw: " << e.what();
    result.run_id = run_id;
    result.status = "failed";
    result.error = "internal error while running the workflow";
    result.inputs = *resolved;
  }
  (void)store_->FinishRun(name, result);
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_.erase(run_id);
  }
  if (stream) {
    r->Write("data: [DONE]\n\n");
    return r->End();
  }
  Json out = result.ToJson(/*with_trace=*/true);
  out["workflow"] = name;
  out["version"] = version;
  SendJson(*r, 200, out);
}

}  // namespace kiln::workflow
