#include "model/tokenizer_loader.h"

#include "model/mapped_file.h"
#include "tokenizer/tokenizer_factory.h"

namespace kiln {
namespace {

// Optional integer key → *out (left unchanged when absent).
Status OptionalId(const GgufFile& f, const std::string& key, int32_t* out) {
  if (f.Find(key) == nullptr) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(int64_t v, f.GetInt(key));
  if (v == 0xFFFFFFFFll) v = -1;  // uint32 "none" as llama.cpp writes it
  if (v < -1 || v > (int64_t{1} << 30))
    return Status::InvalidArgument(f.name() + ": " + key + " out of range");
  *out = static_cast<int32_t>(v);
  return Status::Ok();
}

Status OptionalBool(const GgufFile& f, const std::string& key, bool* out) {
  if (f.Find(key) == nullptr) return Status::Ok();
  KILN_ASSIGN_OR_RETURN(*out, f.GetBool(key));
  return Status::Ok();
}

}  // namespace

StatusOr<GgufVocab> ReadGgufVocab(const GgufFile& f) {
  GgufVocab v;
  KILN_ASSIGN_OR_RETURN(v.model, f.GetString("tokenizer.ggml.model"));
  KILN_ASSIGN_OR_RETURN(v.tokens, f.GetStringArray("tokenizer.ggml.tokens"));
  if (f.Find("tokenizer.ggml.scores") != nullptr) {
    KILN_ASSIGN_OR_RETURN(std::vector<double> scores, f.GetFloatArray("tokenizer.ggml.scores"));
    v.scores.assign(scores.begin(), scores.end());
  }
  if (f.Find("tokenizer.ggml.token_type") != nullptr) {
    KILN_ASSIGN_OR_RETURN(std::vector<int64_t> types, f.GetIntArray("tokenizer.ggml.token_type"));
    v.token_types.reserve(types.size());
    for (int64_t t : types) v.token_types.push_back(static_cast<int32_t>(t));
  }
  if (f.Find("tokenizer.ggml.merges") != nullptr) {
    KILN_ASSIGN_OR_RETURN(v.merges, f.GetStringArray("tokenizer.ggml.merges"));
  }
  KILN_RETURN_IF_ERROR(OptionalId(f, "tokenizer.ggml.bos_token_id", &v.bos_id));
  KILN_RETURN_IF_ERROR(OptionalId(f, "tokenizer.ggml.eos_token_id", &v.eos_id));
  KILN_RETURN_IF_ERROR(OptionalId(f, "tokenizer.ggml.unknown_token_id", &v.unk_id));
  KILN_RETURN_IF_ERROR(OptionalId(f, "tokenizer.ggml.padding_token_id", &v.pad_id));
  v.add_bos = v.model == "llama";
  KILN_RETURN_IF_ERROR(OptionalBool(f, "tokenizer.ggml.add_bos_token", &v.add_bos));
  KILN_RETURN_IF_ERROR(OptionalBool(f, "tokenizer.ggml.add_eos_token", &v.add_eos));
  if (f.Find("tokenizer.ggml.pre") != nullptr) {
    KILN_ASSIGN_OR_RETURN(v.pre, f.GetString("tokenizer.ggml.pre"));
  }
  if (f.Find("tokenizer.chat_template") != nullptr) {
    KILN_ASSIGN_OR_RETURN(v.chat_template, f.GetString("tokenizer.chat_template"));
  }
  return v;
}

StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& path) {
  if (IsDirectory(path)) {
    if (FileExists(path + "/tokenizer.json")) return CreateTokenizerFromJson(path);
    return Status::NotFound(path + ": no tokenizer.json in this directory");
  }
  if (!FileExists(path)) return Status::NotFound(path + ": no such file or directory");
  if (EndsWith(path, ".gguf")) {
    KILN_ASSIGN_OR_RETURN(auto file, GgufFile::Open(path));
    KILN_ASSIGN_OR_RETURN(GgufVocab vocab, ReadGgufVocab(*file));
    return CreateTokenizerFromGgufVocab(vocab);
  }
  if (EndsWith(path, ".json")) return CreateTokenizerFromJson(path);
  return Status::InvalidArgument(path +
                                 ": expected a directory with tokenizer.json, a tokenizer.json "
                                 "file or a .gguf file");
}

}  // namespace kiln
