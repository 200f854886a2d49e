#include "workflow/dify_import.h"

#include <map>
#include <regex>
#include <set>

namespace kiln::workflow {
namespace {

std::string Lit(const std::string& s) { return Json(s).dump(); }  // a Jinja string literal

class Converter {
 public:
  Converter(const Json& doc, const DifyImportOptions& options) : doc_(doc), options_(options) {}

  StatusOr<DifyImport> Convert() {
    if (!doc_.is_object() || doc_.value("kind", "") != "app" || !doc_.contains("workflow")) {
      return Status::InvalidArgument("not a Dify DSL file (expected kind: app and a workflow)");
    }
    const Json& graph = doc_["workflow"].value("graph", Json::object());
    const Json nodes = graph.value("nodes", Json::array());
    const Json edges = graph.value("edges", Json::array());
    if (!nodes.is_array() || nodes.empty())
      return Status::InvalidArgument("workflow.graph.nodes is empty");
    const std::string mode = doc_.value("app", Json::object()).value("mode", "workflow");
    chat_ = mode == "advanced-chat" || mode == "chat";

    // Ids and types first (references need them), and the unconvertible nodes named at once.
    static const std::set<std::string> kSupported = {
        "start", "llm", "if-else", "template-transform", "http-request", "answer", "end"};
    std::string unsupported;
    for (const auto& n : nodes) {
      const Json& data = n.value("data", Json::object());
      const std::string id =
          n.value("id", Json("")).is_string() ? n.value("id", "") : n["id"].dump();
      const std::string type = data.value("type", "");
      if (!kSupported.count(type)) {
        unsupported += (unsupported.empty() ? "" : ", ") + std::string("'") +
                       data.value("title", id) + "' (id " + id + ", type " +
                       (type.empty() ? "?" : type) + ")";
        continue;
      }
      std::string kid;
      for (char c : id) kid += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
      if (kid.empty() || std::isdigit(static_cast<unsigned char>(kid[0]))) {
        std::string t = type == "if-else"              ? "condition"
                        : type == "template-transform" ? "template"
                        : type == "http-request"       ? "http"
                                                       : type;
        kid = t + "_" + kid;
      }
      ids_[id] = kid;
      types_[id] = type;
    }
    if (!unsupported.empty()) {
      return Status::InvalidArgument(
          "these Dify nodes have no kiln equivalent yet: " + unsupported +
          " (kiln converts start, llm, if-else, template-transform, "
          "http-request, answer and end)");
    }
    Json out = {{"name", doc_.value("app", Json::object()).value("name", "imported")},
                {"description", "imported from a Dify DSL file"},
                {"inputs", Json::object()},
                {"nodes", Json::array()},
                {"edges", Json::array()}};
    std::string answer_id;
    for (const auto& n : nodes) {
      const std::string id = n["id"].is_string() ? n["id"].get<std::string>() : n["id"].dump();
      KILN_ASSIGN_OR_RETURN(Json node, ConvertNode(id, n["data"], &out["inputs"]));
      if (types_[id] == "answer") answer_id = ids_[id];
      out["nodes"].push_back(std::move(node));
    }
    for (const auto& e : edges) {
      const std::string src = e.value("source", ""), dst = e.value("target", "");
      if (!ids_.count(src) || !ids_.count(dst)) {
        return Status::InvalidArgument("edge " + e.value("id", "?") + " joins unknown nodes");
      }
      Json edge = {{"from", ids_[src]}, {"to", ids_[dst]}};
      if (types_[src] == "if-else") {
        std::string handle = e.value("sourceHandle", "true");
        edge["branch"] = handle == "false" ? "else" : CaseId(handle);
      }
      out["edges"].push_back(std::move(edge));
    }
    const Json tts =
        doc_["workflow"].value("features", Json::object()).value("text_to_speech", Json::object());
    if (tts.is_object() && tts.value("enabled", false) && !answer_id.empty()) {
      std::string voice = "en";
      const std::string lang = tts.value("language", "");
      if (!lang.empty()) voice = lang.substr(0, lang.find('-'));
      out["nodes"].push_back({{"id", "tts"},
                              {"type", "tts"},
                              {"text", "{{ nodes." + answer_id + ".answer }}"},
                              {"voice", voice}});
      out["edges"].push_back({{"from", answer_id}, {"to", "tts"}});
      notes_.push_back("features.text_to_speech → a tts node 'tts' (espeak-ng voice '" + voice +
                       "') after '" + answer_id + "'");
    }
    if (out["inputs"].empty()) out.erase("inputs");
    DifyImport r;
    r.spec = std::move(out);
    r.yaml = DumpYaml(r.spec);
    r.notes = std::move(notes_);
    return r;
  }

 private:
  static std::string CaseId(const std::string& handle) {
    std::string id;
    for (char c : handle) id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    if (id.empty() || std::isdigit(static_cast<unsigned char>(id[0]))) id = "case_" + id;
    return id;
  }

  // A Dify value selector [node_id, var, ...] → a kiln expression.
  std::string Selector(const Json& sel) {
    if (!sel.is_array() || sel.size() < 2) return "none";
    const std::string node = sel[0].is_string() ? sel[0].get<std::string>() : sel[0].dump();
    std::string var = sel[1].is_string() ? sel[1].get<std::string>() : sel[1].dump();
    std::string expr;
    if (node == "sys") {
      if (var == "query") return "inputs.query";
      if (var == "user_id") return "sys.user";
      return "sys." + var;
    }
    const auto t = types_.find(node);
    if (t == types_.end()) return "none";
    if (t->second == "start") {
      expr = "inputs." + var;
    } else {
      if (t->second == "template-transform" && var == "output") var = "text";
      if (t->second == "http-request" && var == "status_code") var = "status";
      expr = "nodes." + ids_[node] + "." + var;
    }
    for (size_t i = 2; i < sel.size(); ++i) expr += "[" + sel[i].dump() + "]";
    return expr;
  }

  std::string Text(const std::string& s) {
    static const std::regex kRef(R"(\{\{#([^#{}]+)#\}\})");
    std::string out;
    size_t last = 0;
    for (auto it = std::sregex_iterator(s.begin(), s.end(), kRef); it != std::sregex_iterator();
         ++it) {
      out += s.substr(last, static_cast<size_t>(it->position()) - last);
      const std::string path = (*it)[1].str();
      Json sel = Json::array();
      size_t pos = 0;
      while (pos <= path.size()) {
        const size_t dot = path.find('.', pos);
        sel.push_back(path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos));
        if (dot == std::string::npos) break;
        pos = dot + 1;
      }
      out += "{{ " + Selector(sel) + " }}";
      last = static_cast<size_t>(it->position() + it->length());
    }
    return out + s.substr(last);
  }

  StatusOr<std::string> Condition(const Json& c, const std::string& where) {
    const std::string var = Selector(c.value("variable_selector", Json::array()));
    const std::string op = c.value("comparison_operator", "");
    const Json value = c.value("value", Json(""));
    const std::string v = value.is_string() ? value.get<std::string>() : value.dump();
    if (op == "contains") return Lit(v) + " in (" + var + " | string)";
    if (op == "not contains") return Lit(v) + " not in (" + var + " | string)";
    if (op == "start with") return "(" + var + " | string).startswith(" + Lit(v) + ")";
    if (op == "end with") return "(" + var + " | string).endswith(" + Lit(v) + ")";
    if (op == "is") return "(" + var + " | string) == " + Lit(v);
    if (op == "is not") return "(" + var + " | string) != " + Lit(v);
    if (op == "empty") return "not " + var;
    if (op == "not empty") return "(" + var + ") and true";
    if (op == "null") return var + " is none";
    if (op == "not null") return var + " is not none";
    static const std::map<std::string, std::string> kNum = {{"=", "=="}, {"≠", "!="}, {">", ">"},
                                                            {"<", "<"},  {"≥", ">="}, {"≤", "<="}};
    if (const auto it = kNum.find(op); it != kNum.end()) {
      return "(" + var + " | float) " + it->second + " " + std::to_string(std::atof(v.c_str()));
    }
    return Status::InvalidArgument(where + ": comparison operator '" + op +
                                   "' has no kiln equivalent");
  }

  StatusOr<Json> ConvertNode(const std::string& id, const Json& d, Json* inputs) {
    const std::string type = types_[id];
    const std::string kid = ids_[id];
    const std::string where = "node '" + d.value("title", id) + "' (" + type + ")";
    Json n = {{"id", kid}};
    if (d.contains("title")) n["title"] = d["title"];
    if (type == "start") {
      n["type"] = "start";
      for (const auto& v : d.value("variables", Json::array())) {
        const std::string name = v.value("variable", "");
        if (name.empty()) continue;
        const std::string vt = v.value("type", "text-input");
        Json decl = {{"type", vt == "number" ? "number" : "string"},
                     {"required", v.value("required", false)}};
        (*inputs)[name] = decl;
      }
      if (chat_) {
        (*inputs)["query"] = {{"type", "string"}, {"required", true}};
        (*inputs)["history"] = {{"type", "array"}, {"default", Json::array()}};
        notes_.push_back(
            "chat app: inputs 'query' (sys.query) and 'history' (conversation memory) added");
      }
    } else if (type == "llm") {
      n["type"] = "llm";
      const Json model = d.value("model", Json::object());
      n["model"] = options_.model.empty() ? model.value("name", "") : options_.model;
      if (!options_.model.empty())
        notes_.push_back(where + ": model '" + model.value("name", "") + "' → '" + options_.model +
                         "'");
      Json sampling = Json::object();
      const Json params = model.value("completion_params", Json::object());
      for (auto it = params.begin(); it != params.end(); ++it) {
        static const std::set<std::string> kKeep = {
            "temperature",       "top_p", "max_tokens", "presence_penalty",
            "frequency_penalty", "stop",  "seed"};
        if (kKeep.count(it.key())) sampling[it.key()] = it.value();
      }
      if (!sampling.empty()) n["sampling"] = sampling;
      Json messages = Json::array();
      std::string system;
      const Json pt = d.value("prompt_template", Json::array());
      if (pt.is_array()) {
        for (const auto& m : pt) {
          const std::string role = m.value("role", "user");
          const std::string text = Text(m.value("text", ""));
          if (role == "system" && messages.empty() && system.empty()) {
            system = text;
          } else {
            messages.push_back({{"role", role}, {"content", text}});
          }
        }
      } else if (pt.is_object()) {
        messages.push_back({{"role", "user"}, {"content", Text(pt.value("text", ""))}});
      }
      if (!system.empty()) n["system"] = system;
      const Json memory = d.value("memory", Json());
      if (memory.is_object()) {
        n["history"] = "{{ inputs.history }}";
        messages.push_back(
            {{"role", "user"},
             {"content", Text(memory.value("query_prompt_template", "{{#sys.query#}}"))}});
      } else if (chat_) {
        bool has_user = false;
        for (const auto& m : messages) has_user = has_user || m["role"] == "user";
        if (!has_user) messages.push_back({{"role", "user"}, {"content", "{{ inputs.query }}"}});
      }
      if (messages.empty()) return Status::InvalidArgument(where + ": the prompt has no messages");
      n["messages"] = messages;
      if (d.value("context", Json::object()).value("enabled", false)) {
        notes_.push_back(where + ": knowledge context dropped (no retrieval node in kiln)");
      }
    } else if (type == "if-else") {
      n["type"] = "condition";
      Json cases = d.value("cases", Json());
      if (!cases.is_array()) {  // the older single-case form
        cases = Json::array({{{"case_id", "true"},
                              {"logical_operator", d.value("logical_operator", "and")},
                              {"conditions", d.value("conditions", Json::array())}}});
      }
      Json out_cases = Json::array();
      for (const auto& c : cases) {
        const std::string joiner = c.value("logical_operator", "and") == "or" ? " or " : " and ";
        std::string expr;
        for (const auto& cond : c.value("conditions", Json::array())) {
          KILN_ASSIGN_OR_RETURN(std::string e, Condition(cond, where));
          expr += (expr.empty() ? "" : joiner) + std::string("(") + e + ")";
        }
        if (expr.empty()) expr = "false";
        out_cases.push_back({{"id", CaseId(c.value("case_id", "true"))}, {"when", expr}});
      }
      n["cases"] = out_cases;
    } else if (type == "template-transform") {
      n["type"] = "template";
      std::string prefix;
      for (const auto& v : d.value("variables", Json::array())) {
        prefix += "{% set " + v.value("variable", "x") + " = " +
                  Selector(v.value("value_selector", Json::array())) + " %}";
      }
      n["template"] = prefix + d.value("template", "");
    } else if (type == "http-request") {
      n["type"] = "http";
      std::string method = d.value("method", "get");
      for (auto& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      n["method"] = method;
      std::string url = Text(d.value("url", ""));
      std::string params = d.value("params", "");
      std::string query;
      size_t pos = 0;
      while (pos < params.size()) {
        size_t nl = params.find('\n', pos);
        if (nl == std::string::npos) nl = params.size();
        const std::string line = params.substr(pos, nl - pos);
        const size_t colon = line.find(':');
        if (colon != std::string::npos) {
          query += (query.empty() ? "" : "&") + line.substr(0, colon) + "=" +
                   Text(line.substr(colon + 1));
        }
        pos = nl + 1;
      }
      if (!query.empty()) url += (url.find('?') == std::string::npos ? "?" : "&") + query;
      n["url"] = url;
      Json headers = Json::object();
      const std::string hs = d.value("headers", "");
      pos = 0;
      while (pos < hs.size()) {
        size_t nl = hs.find('\n', pos);
        if (nl == std::string::npos) nl = hs.size();
        const std::string line = hs.substr(pos, nl - pos);
        const size_t colon = line.find(':');
        if (colon != std::string::npos)
          headers[line.substr(0, colon)] = Text(line.substr(colon + 1));
        pos = nl + 1;
      }
      if (!headers.empty()) n["headers"] = headers;
      const Json body = d.value("body", Json::object());
      const std::string bt = body.value("type", "none");
      if (bt == "json" || bt == "raw-text") {
        Json data = body.value("data", Json(""));
        std::string text;
        if (data.is_string()) text = data.get<std::string>();
        if (data.is_array()) {
          for (const auto& part : data) text += part.value("value", "");
        }
        n["body"] = Text(text);
        if (bt == "json" && !headers.contains("Content-Type")) {
          n["headers"] = headers;
          n["headers"]["Content-Type"] = "application/json";
        }
      } else if (bt != "none") {
        return Status::InvalidArgument(where + ": body type '" + bt + "' has no kiln equivalent");
      }
      const Json timeout = d.value("timeout", Json::object());
      if (timeout.is_object() && timeout.contains("read") && timeout["read"].is_number()) {
        n["timeout_s"] = timeout["read"].get<double>() + timeout.value("connect", 0.0);
      }
    } else if (type == "answer") {
      n["type"] = "answer";
      n["answer"] = Text(d.value("answer", ""));
    } else if (type == "end") {
      n["type"] = "end";
      Json outputs = Json::object();
      for (const auto& o : d.value("outputs", Json::array())) {
        outputs[o.value("variable", "output")] =
            "{{ " + Selector(o.value("value_selector", Json::array())) + " }}";
      }
      n["outputs"] = outputs;
    }
    return n;
  }

  const Json& doc_;
  const DifyImportOptions& options_;
  bool chat_ = false;
  std::map<std::string, std::string> ids_, types_;
  std::vector<std::string> notes_;
};

}  // namespace

StatusOr<DifyImport> ImportDify(const std::string& text, const DifyImportOptions& options) {
  KILN_ASSIGN_OR_RETURN(Json doc, ParseDocument(text));
  Converter c(doc, options);
  // The converter reads fields with defaults; a field of another type than Dify writes (a number
  // for a title, an object for a model name) makes the JSON library throw: that is the file's
  // error, reported as such, never an abort.
  StatusOr<DifyImport> converted = Status::Internal("not converted");
  try {
    converted = c.Convert();
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("the Dify file has a field of an unexpected type (") +
                                   e.what() + ")");
  }
  KILN_ASSIGN_OR_RETURN(DifyImport r, std::move(converted));
  // The result must be a valid workflow.
  auto spec = SpecFromJson(r.spec);
  if (!spec.ok()) return spec.status().WithContext("the converted workflow is invalid");
  return r;
}

}  // namespace kiln::workflow
