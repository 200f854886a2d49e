#include "engine/structured_constraint.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>

#include "structured/structured_output.h"

namespace kiln {
namespace {

class GrammarConstraint final : public TokenConstraint {
 public:
  explicit GrammarConstraint(std::shared_ptr<const structured::CompiledGrammar> grammar)
      : matcher_(std::move(grammar)) {}
  void FillNextTokenBitmask(uint32_t* bitmask) override { matcher_.FillNextTokenBitmask(bitmask); }
  Status AcceptToken(int32_t token_id) override {
    if (!matcher_.AcceptToken(token_id)) {
      return Status::Internal("token id " + std::to_string(token_id) +
                              " was sampled but violates the response_format grammar");
    }
    return Status::Ok();
  }
  bool IsTerminated() const override { return matcher_.IsTerminated(); }

 private:
  structured::GrammarMatcher matcher_;
};

struct SharedCompiler {
  const Tokenizer* tokenizer;
  int vocab_size;
  std::vector<int32_t> eos_token_ids;
  std::once_flag once;
  Status init_status;
  std::unique_ptr<structured::GrammarCompiler> compiler;

  void Init() {
    structured::VocabInfo info;
    info.vocab_size = vocab_size;
    info.eos_token_ids = eos_token_ids;
    const int n = std::min(vocab_size, tokenizer->vocab_size());
    info.token_bytes.resize(static_cast<size_t>(n));
    for (int32_t id = 0; id < n; ++id) {
      if (!tokenizer->IsSpecial(id))
        info.token_bytes[static_cast<size_t>(id)] = tokenizer->TokenBytes(id);
    }
    auto c = structured::GrammarCompiler::Create(info);
    if (!c.ok()) {
      init_status = c.status().WithContext("building the structured-output vocabulary");
      return;
    }
    compiler = std::move(c).value();
  }
};

}  // namespace

TokenConstraintFactory MakeStructuredConstraintFactory(const Tokenizer* tokenizer, int vocab_size,
                                                       std::vector<int32_t> eos_token_ids) {
  auto shared = std::make_shared<SharedCompiler>();
  shared->tokenizer = tokenizer;
  shared->vocab_size = vocab_size;
  if (tokenizer->eos_token_id() >= 0 &&
      std::find(eos_token_ids.begin(), eos_token_ids.end(), tokenizer->eos_token_id()) ==
          eos_token_ids.end()) {
    eos_token_ids.push_back(tokenizer->eos_token_id());
  }
  shared->eos_token_ids = std::move(eos_token_ids);
  return [shared](const ResponseFormat& format,
                  int /*vocab_size*/) -> StatusOr<std::unique_ptr<TokenConstraint>> {
    std::call_once(shared->once, [&] { shared->Init(); });
    if (!shared->init_status.ok()) return shared->init_status;
    KILN_ASSIGN_OR_RETURN(std::shared_ptr<const structured::CompiledGrammar> grammar,
                          shared->compiler->Compile(format));
    return std::unique_ptr<TokenConstraint>(new GrammarConstraint(std::move(grammar)));
  };
}

}  // namespace kiln
