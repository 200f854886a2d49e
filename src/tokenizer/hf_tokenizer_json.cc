// CreateTokenizerFromJson: HF tokenizers' tokenizer.json (+ tokenizer_config.json and
// chat_template.jinja beside it) → BpeTokenizer. Only the BPE model is supported; the other
// components are parsed by their own classes (normalizer.h, pre_tokenizer.h, decoder.h).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_factory.h"
#include "tokenizer/vocab_builder.h"

namespace kiln {
namespace {

using json = nlohmann::json;
using tokenizer::AddedToken;
using tokenizer::BpeTokenizerParts;
using tokenizer::StringIdMap;

constexpr int64_t kMaxVocabSize = int64_t{1} << 24;

StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return Status::IOError("cannot read " + path.string());
  return buffer.str();
}

StatusOr<json> ReadJson(const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return Status::DataLoss(path.string() + " is not valid JSON");
  return parsed;
}

// model.vocab and model.merges, taken out of the document while it is parsed: building them as
// nlohmann objects (a std::map of 150k strings) would be most of the load time.
struct ModelTables {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string error;  // the first malformed entry
};

StatusOr<json> ParseTokenizerJson(const std::string& text, const std::string& name,
                                  ModelTables* tables) {
  std::string key1, key2, pending_key;
  auto under_model = [&](const char* key) { return key2 == key && key1 == "model"; };
  auto fail = [&](const std::string& message) {
    if (tables->error.empty()) tables->error = message;
    return false;
  };
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event,
                                         json& parsed) -> bool {
    using Event = json::parse_event_t;
    if (event == Event::key) {
      if (depth == 1) key1 = parsed.get<std::string>();
      if (depth == 2) key2 = parsed.get<std::string>();
      if (depth == 3 && under_model("vocab")) {
        pending_key = std::move(parsed.get_ref<std::string&>());
        return false;  // the value is dropped with its key, after the value event below
      }
      return true;
    }
    if (depth != 3) return true;
    if (under_model("vocab")) {
      if (event == Event::value) {
        if (!parsed.is_number_integer() || parsed.get<int64_t>() < 0 ||
            parsed.get<int64_t>() >= kMaxVocabSize) {
          return fail("piece '" + pending_key + "' has a bad id");
        }
        tables->vocab.emplace_back(std::move(pending_key), parsed.get<int32_t>());
        return false;
      }
      if (event == Event::object_end || event == Event::array_end) {
        return fail("piece '" + pending_key + "' has a bad id");
      }
      return true;
    }
    if (under_model("merges")) {
      if (event == Event::value) {
        std::pair<std::string, std::string> pair;
        if (!parsed.is_string() ||
            !tokenizer::SplitMergeString(parsed.get<std::string>(), &pair).ok()) {
          return fail("merge " + parsed.dump() + " is not \"a b\" or [\"a\", \"b\"]");
        }
        tables->merges.push_back(std::move(pair));
        return false;
      }
      if (event == Event::array_end) {
        if (parsed.size() != 2 || !parsed[0].is_string() || !parsed[1].is_string()) {
          return fail("merge " + parsed.dump() + " is not \"a b\" or [\"a\", \"b\"]");
        }
        tables->merges.emplace_back(std::move(parsed[0].get_ref<std::string&>()),
                                    std::move(parsed[1].get_ref<std::string&>()));
        return false;
      }
      if (event == Event::object_end) return fail("a merge is an object");
    }
    return true;
  };
  json parsed = json::parse(text, callback, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::DataLoss(name + " is not valid JSON");
  if (!tables->error.empty()) return Status::DataLoss(name + ": " + tables->error);
  return parsed;
}

// obj[key] without copying (json::value returns a copy), or null when absent.
const json& Member(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

// A special-token entry of tokenizer_config.json: "text", {"content": "text", ...} or null.
std::string TokenName(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  return {};
}

Status ReadAddedToken(const json& j, AddedToken* token) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_number_integer() ||
      !j.contains("content") || !j["content"].is_string()) {
    return Status::DataLoss("added token: 'id' and 'content' expected");
  }
  token->id = j["id"].get<int32_t>();
  token->content = j["content"].get<std::string>();
  token->special = j.value("special", false);
  token->lstrip = j.value("lstrip", false);
  token->rstrip = j.value("rstrip", false);
  token->single_word = j.value("single_word", false);
  token->normalized = j.value("normalized", !token->special);
  if (token->id < 0 || token->id >= kMaxVocabSize) {
    return Status::DataLoss("added token '" + token->content + "' has id " +
                            std::to_string(token->id));
  }
  return Status::Ok();
}

// Adds "A"-relative prefix/suffix ids of a post-processor (TemplateProcessing, Bert, Roberta,
// ByteLevel, Sequence).
Status ReadPostProcessor(const json& j, std::vector<int32_t>* prefix,
                         std::vector<int32_t>* suffix) {
  if (j.is_null()) return Status::Ok();
  const std::string type = j.value("type", std::string());
  if (type == "ByteLevel") return Status::Ok();
  if (type == "Sequence") {
    const json& list = Member(j, "processors");
    if (!list.is_array()) return Status::DataLoss("post_processor Sequence: 'processors' expected");
    for (const json& p : list) KILN_RETURN_IF_ERROR(ReadPostProcessor(p, prefix, suffix));
    return Status::Ok();
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const json& cls = Member(j, "cls");
    const json& sep = Member(j, "sep");
    if (!cls.is_array() || cls.size() != 2 || !cls[1].is_number_integer() || !sep.is_array() ||
        sep.size() != 2 || !sep[1].is_number_integer()) {
      return Status::DataLoss("post_processor " + type + ": 'cls' and 'sep' pairs expected");
    }
    prefix->push_back(cls[1].get<int32_t>());
    suffix->push_back(sep[1].get<int32_t>());
    return Status::Ok();
  }
  if (type == "TemplateProcessing") {
    const json& single = Member(j, "single");
    const json& specials = Member(j, "special_tokens");
    if (!single.is_array()) return Status::DataLoss("TemplateProcessing: 'single' array expected");
    bool seen_sequence = false;
    for (const json& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken") || !item["SpecialToken"].is_object()) {
        return Status::DataLoss("TemplateProcessing: unknown item " + item.dump());
      }
      const std::string name = item["SpecialToken"].value("id", std::string());
      const json& entry = Member(specials, name.c_str());
      if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array()) {
        return Status::DataLoss("TemplateProcessing: special token '" + name + "' has no ids");
      }
      for (const json& id : entry["ids"]) {
        if (!id.is_number_integer()) return Status::DataLoss("TemplateProcessing: bad id");
        (seen_sequence ? suffix : prefix)->push_back(id.get<int32_t>());
      }
    }
    return Status::Ok();
  }
  return Status::Unimplemented("post_processor type '" + type + "' is not supported");
}

void ReadChatTemplates(const json& config, const std::filesystem::path& dir,
                       std::map<std::string, std::string>* templates) {
  const json& value = Member(config, "chat_template");
  if (value.is_string()) {
    (*templates)["default"] = value.get<std::string>();
  } else if (value.is_array()) {
    for (const json& item : value) {
      if (item.is_object() && Member(item, "name").is_string() &&
          Member(item, "template").is_string()) {
        (*templates)[item["name"].get<std::string>()] = item["template"].get<std::string>();
      }
    }
  }
  // Newer transformers save the template next to the config.
  auto jinja = ReadFile(dir / "chat_template.jinja");
  if (jinja.ok()) (*templates)["default"] = std::move(jinja).value();
}

StatusOr<std::unique_ptr<Tokenizer>> Build(const json& root, ModelTables tables, const json& config,
                                           const std::filesystem::path& dir) {
  if (!root.is_object()) return Status::DataLoss("tokenizer.json: a JSON object expected");
  const json& model = Member(root, "model");
  if (!model.is_object()) return Status::DataLoss("tokenizer.json: 'model' object expected");
  const std::string model_type = model.value("type", std::string("BPE"));
  if (model_type != "BPE") {
    return Status::Unimplemented("tokenizer.json model type '" + model_type +
                                 "' is not supported (only BPE)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = model.value(key, json());
    if (v.is_string() && !v.get<std::string>().empty()) {
      return Status::Unimplemented(std::string("BPE '") + key + "' is not supported");
    }
  }

  BpeTokenizerParts parts;
  KILN_ASSIGN_OR_RETURN(parts.normalizer,
                        tokenizer::Normalizer::FromJson(Member(root, "normalizer")));
  KILN_ASSIGN_OR_RETURN(parts.pre_tokenizer,
                        tokenizer::PreTokenizer::FromJson(Member(root, "pre_tokenizer")));
  KILN_ASSIGN_OR_RETURN(parts.decoder, tokenizer::Decoder::FromJson(Member(root, "decoder")));
  KILN_RETURN_IF_ERROR(
      ReadPostProcessor(Member(root, "post_processor"), &parts.prefix_ids, &parts.suffix_ids));

  // Vocabulary (taken out of the document by ParseTokenizerJson).
  if (!Member(model, "vocab").is_object()) {
    return Status::DataLoss("tokenizer.json: model.vocab object expected");
  }
  std::vector<std::pair<std::string, int32_t>>& entries = tables.vocab;
  int64_t max_id = -1;
  for (const auto& entry : entries) max_id = std::max<int64_t>(max_id, entry.second);
  std::vector<AddedToken> added;
  const json& added_json = Member(root, "added_tokens");
  if (!added_json.is_array() && !added_json.is_null())
    return Status::DataLoss("tokenizer.json: 'added_tokens' array expected");
  for (const json& item : added_json) {
    AddedToken token;
    KILN_RETURN_IF_ERROR(ReadAddedToken(item, &token));
    added.push_back(std::move(token));
  }
  // tokenizer_config.json's added_tokens_decoder may name tokens tokenizer.json lacks.
  const json& decoder_map = Member(config, "added_tokens_decoder");
  if (decoder_map.is_object()) {
    for (const auto& [key, item] : decoder_map.items()) {
      json with_id = item;
      if (!with_id.is_object()) continue;
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (end == key.c_str() || *end != '\0') continue;
      with_id["id"] = id;
      AddedToken token;
      if (!ReadAddedToken(with_id, &token).ok()) continue;
      bool known = false;
      for (const AddedToken& a : added) known |= a.id == token.id;
      if (!known) added.push_back(std::move(token));
    }
  }
  for (const AddedToken& token : added) max_id = std::max<int64_t>(max_id, token.id);
  if (max_id < 0) return Status::DataLoss("tokenizer.json: empty vocabulary");

  parts.pieces.assign(max_id + 1, std::string());
  parts.id_used.assign(max_id + 1, 0);
  std::vector<uint8_t> in_model(max_id + 1, 0);
  for (auto& [piece, id] : entries) {
    parts.pieces[id] = std::move(piece);
    parts.id_used[id] = 1;
    in_model[id] = 1;
  }
  for (const AddedToken& token : added) {
    parts.pieces[token.id] = token.content;
    parts.id_used[token.id] = 1;
  }
  const StringIdMap piece_ids = tokenizer::PieceIds(parts.pieces, in_model);

  // Merges ("a b" strings or ["a", "b"] pairs, split while parsing).
  const json& merges_json = Member(model, "merges");
  if (!merges_json.is_array() && !merges_json.is_null()) {
    return Status::DataLoss("tokenizer.json: model.merges array expected");
  }
  const std::vector<std::pair<std::string, std::string>>& pairs = tables.merges;
  KILN_ASSIGN_OR_RETURN(std::vector<tokenizer::BpeMerge> merges,
                        tokenizer::MergesFromPairs(pairs, piece_ids));

  tokenizer::BpeOptions options;
  options.byte_units = parts.pre_tokenizer.has_byte_level();
  const json& byte_fallback = Member(model, "byte_fallback");
  options.byte_fallback = byte_fallback.is_boolean() && byte_fallback.get<bool>();
  const json& fuse_unk = Member(model, "fuse_unk");
  options.fuse_unk = fuse_unk.is_boolean() && fuse_unk.get<bool>();
  const json& ignore_merges = Member(model, "ignore_merges");
  options.ignore_merges = ignore_merges.is_boolean() && ignore_merges.get<bool>();
  const json& unk = Member(model, "unk_token");
  if (unk.is_string()) {
    auto it = piece_ids.find(unk.get<std::string>());
    if (it == piece_ids.end()) {
      return Status::DataLoss("tokenizer.json: unk_token '" + unk.get<std::string>() +
                              "' is not in the vocabulary");
    }
    options.unk_id = it->second;
  }
  parts.model = std::make_unique<tokenizer::BpeModel>(
      options, tokenizer::ModelSpaceVocab(piece_ids, options.byte_units), merges,
      tokenizer::ByteFallbackIds(piece_ids));
  parts.added_tokens = std::move(added);

  // Special tokens and chat templates.
  auto id_of = [&](const std::string& name) -> int32_t {
    if (name.empty()) return -1;
    for (const AddedToken& t : parts.added_tokens) {
      if (t.content == name) return t.id;
    }
    auto it = piece_ids.find(name);
    return it == piece_ids.end() ? -1 : it->second;
  };
  if (config.is_object() && !config.empty()) {
    parts.bos_id = id_of(TokenName(Member(config, "bos_token")));
    parts.eos_id = id_of(TokenName(Member(config, "eos_token")));
    ReadChatTemplates(config, dir, &parts.chat_templates);
  } else if (!parts.prefix_ids.empty()) {
    parts.bos_id = parts.prefix_ids.front();  // no config: the token the post-processor prepends
  }
  for (int32_t id : parts.prefix_ids) {
    if (id < 0 || id > max_id || !parts.id_used[id])
      return Status::DataLoss("post_processor: id out of range");
  }
  for (int32_t id : parts.suffix_ids) {
    if (id < 0 || id > max_id || !parts.id_used[id])
      return Status::DataLoss("post_processor: id out of range");
  }
  return std::unique_ptr<Tokenizer>(std::make_unique<tokenizer::BpeTokenizer>(std::move(parts)));
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> CreateTokenizerFromJson(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(file, ec)) file /= "tokenizer.json";
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  ModelTables tables;
  KILN_ASSIGN_OR_RETURN(json root, ParseTokenizerJson(text, file.string(), &tables));
  text = std::string();
  json config = json::object();
  if (fs::exists(dir / "tokenizer_config.json", ec)) {
    KILN_ASSIGN_OR_RETURN(config, ReadJson(dir / "tokenizer_config.json"));
    if (!config.is_object())
      return Status::DataLoss("tokenizer_config.json: a JSON object expected");
  }
  // nlohmann's typed accessors throw on a value of the wrong type: that is bad input here.
  try {
    auto built = Build(root, std::move(tables), config, dir);
    if (!built.ok()) return built.status().WithContext(file.string());
    return built;
  } catch (const json::exception& e) {
    return Status::DataLoss(file.string() + ": unexpected JSON value: " + e.what());
  }
}

}  // namespace kiln
