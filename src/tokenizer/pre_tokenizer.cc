#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/pipeline_json.h"

namespace kiln::tokenizer {
namespace {

using json = nlohmann::json;

// Splits `piece` at the matches of the step's pattern with its delimiter behaviour (HF
// NormalizedString::split).
void SplitByMatches(const PreTokenizer::Step& step, std::string_view piece,
                    std::vector<std::string_view>* out) {
  using Behavior = PreTokenizer::Behavior;
  thread_local std::vector<MatchSpan> matches;
  matches.clear();
  if (step.regex != nullptr) {
    // On an engine failure the unmatched rest becomes one gap (never drops text).
    (void)step.regex->FindAll(piece, &matches);
  } else if (!step.literal.empty()) {
    for (size_t at = piece.find(step.literal); at != std::string_view::npos;
         at = piece.find(step.literal, at + step.literal.size())) {
      matches.push_back({at, at + step.literal.size()});
    }
  }
  // (begin, end, is_match) over the whole piece; with invert the roles swap.
  struct Part {
    size_t begin, end;
    bool match;
  };
  thread_local std::vector<Part> parts;
  parts.clear();
  size_t last = 0;
  for (const MatchSpan& m : matches) {
    if (m.begin > last) parts.push_back({last, m.begin, step.invert});
    parts.push_back({m.begin, m.end, !step.invert});
    last = m.end;
  }
  if (last < piece.size()) parts.push_back({last, piece.size(), step.invert});

  auto emit = [&](size_t begin, size_t end) {
    if (end > begin) out->push_back(piece.substr(begin, end - begin));
  };
  switch (step.behavior) {
    case Behavior::kIsolated:
      for (const Part& p : parts) emit(p.begin, p.end);
      break;
    case Behavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.match) emit(p.begin, p.end);
      }
      break;
    case Behavior::kMergedWithPrevious: {
      size_t begin = 0;
      for (const Part& p : parts) {
        if (p.match) {
          emit(begin, p.end);
          begin = p.end;
        }
      }
      emit(begin, piece.size());
      break;
    }
    case Behavior::kMergedWithNext: {
      size_t begin = 0;
      for (const Part& p : parts) {
        if (p.match) {
          emit(begin, p.begin);
          begin = p.begin;
        }
      }
      emit(begin, piece.size());
      break;
    }
    case Behavior::kContiguous: {
      // Adjacent matches merge into one word; gaps stay words of their own.
      size_t begin = 0;
      bool previous_match = false;
      for (size_t i = 0; i < parts.size(); ++i) {
        const Part& p = parts[i];
        if (i > 0 && !(p.match && previous_match)) {
          emit(begin, p.begin);
          begin = p.begin;
        }
        previous_match = p.match;
      }
      emit(begin, piece.size());
      break;
    }
  }
}

Status ReadBehavior(const json& j, PreTokenizer::Behavior* behavior) {
  const std::string name = j.value("behavior", std::string("Isolated"));
  using Behavior = PreTokenizer::Behavior;
  if (name == "Isolated")
    *behavior = Behavior::kIsolated;
  else if (name == "Removed")
    *behavior = Behavior::kRemoved;
  else if (name == "MergedWithPrevious")
    *behavior = Behavior::kMergedWithPrevious;
  else if (name == "MergedWithNext")
    *behavior = Behavior::kMergedWithNext;
  else if (name == "Contiguous")
    *behavior = Behavior::kContiguous;
  else
    return Status::InvalidArgument("Split: unknown behavior '" + name + "'");
  return Status::Ok();
}

StatusOr<std::shared_ptr<const Regex>> CompileShared(std::string_view pattern) {
  auto compiled = Regex::Compile(pattern);
  if (!compiled.ok()) return compiled.status();
  return std::shared_ptr<const Regex>(std::move(compiled).value());
}

}  // namespace

StatusOr<PreTokenizer> PreTokenizer::FromJson(const json& j) {
  std::vector<Step> steps;
  if (!j.is_null()) {
    KILN_RETURN_IF_ERROR(ForEachComponent(j, "pre_tokenizer", "pretokenizers",
                                          [&](const json& item, const std::string& type) {
                                            return AddFromJson(item, type, &steps);
                                          }));
  }
  return PreTokenizer(std::move(steps));
}

StatusOr<PreTokenizer> PreTokenizer::IsolatedRegex(std::string_view pattern) {
  Step step;
  step.kind = Kind::kSplit;
  KILN_ASSIGN_OR_RETURN(step.regex, CompileShared(pattern));
  return PreTokenizer(std::vector<Step>{std::move(step)});
}

PreTokenizer::PreTokenizer(std::vector<Step> steps) : steps_(std::move(steps)) {
  for (const Step& s : steps_) {
    if (s.kind == Kind::kByteLevel) byte_level_ = true;
    if (s.identity) continue;
    active_steps_.push_back(&s - steps_.data());
  }
}

bool PreTokenizer::has_byte_level() const { return byte_level_; }

Status PreTokenizer::AddFromJson(const json& j, const std::string& type, std::vector<Step>* steps) {
  Step step;
  if (type == "Split") {
    step.kind = Kind::kSplit;
    const json& pattern = j.value("pattern", json());
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      KILN_ASSIGN_OR_RETURN(step.regex, CompileShared(pattern["Regex"].get<std::string>()));
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      step.literal = pattern["String"].get<std::string>();
    } else {
      return Status::InvalidArgument("pre_tokenizer Split: 'pattern' must be {String|Regex: ...}");
    }
    KILN_RETURN_IF_ERROR(ReadBehavior(j, &step.behavior));
    step.invert = j.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    step.add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) {
      KILN_ASSIGN_OR_RETURN(step.regex, CompileShared(kGpt2Pattern));
    }
    // Without regex or prefix space the step only maps bytes to characters: the identity in
    // kiln's model space. Keep it (has_byte_level) but make it free.
    step.identity = step.regex == nullptr && !step.add_prefix_space;
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    step.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    step.split = j.value("split", true);
    const std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme == "always")
      step.prepend_scheme = PrependScheme::kAlways;
    else if (scheme == "first")
      step.prepend_scheme = PrependScheme::kFirst;
    else if (scheme == "never")
      step.prepend_scheme = PrependScheme::kNever;
    else if (scheme.empty()) {
      step.prepend_scheme =
          j.value("add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
    } else {
      return Status::InvalidArgument("Metaspace: unknown prepend_scheme '" + scheme + "'");
    }
  } else if (type == "Digits") {
    step.kind = Kind::kSplit;
    KILN_ASSIGN_OR_RETURN(
        step.regex, CompileShared(j.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+"));
  } else {
    return Status::Unimplemented("pre_tokenizer type '" + type + "' is not supported");
  }
  steps->push_back(std::move(step));
  return Status::Ok();
}

void PreTokenizer::ApplyStep(const Step& step, std::string_view piece, bool first_piece,
                             std::vector<std::string_view>* out, Arena* arena) {
  switch (step.kind) {
    case Kind::kSplit:
      SplitByMatches(step, piece, out);
      return;
    case Kind::kByteLevel: {
      if (step.add_prefix_space && !piece.empty() && piece[0] != ' ') {
        std::string& s = arena->emplace_back(" ");
        s += piece;
        piece = s;
      }
      if (step.regex != nullptr) {
        Step split;
        split.regex = step.regex;
        SplitByMatches(split, piece, out);
      } else {
        out->push_back(piece);
      }
      return;
    }
    case Kind::kMetaspace: {
      std::string& s = arena->emplace_back();
      const bool starts =
          piece.substr(0, 1) == " " || piece.substr(0, step.replacement.size()) == step.replacement;
      if (!starts && ((step.prepend_scheme == PrependScheme::kAlways) ||
                      (step.prepend_scheme == PrependScheme::kFirst && first_piece))) {
        s = step.replacement;
      }
      for (char c : piece) {
        if (c == ' ') {
          s += step.replacement;
        } else {
          s.push_back(c);
        }
      }
      if (step.split) {
        Step split;
        split.literal = step.replacement;
        split.behavior = Behavior::kMergedWithNext;
        SplitByMatches(split, s, out);
      } else if (!s.empty()) {
        out->push_back(s);
      }
      return;
    }
  }
}

void PreTokenizer::Split(std::string_view text, bool at_text_start,
                         std::vector<std::string_view>* words, Arena* arena) const {
  if (text.empty()) return;
  if (active_steps_.empty()) {
    words->push_back(text);
    return;
  }
  if (active_steps_.size() == 1) {
    ApplyStep(steps_[active_steps_[0]], text, at_text_start, words, arena);
    return;
  }
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t s = 0; s < active_steps_.size(); ++s) {
    std::vector<std::string_view>* target = s + 1 == active_steps_.size() ? words : &next;
    next.clear();
    for (size_t i = 0; i < current.size(); ++i) {
      const bool first_piece = at_text_start && i == 0 && current[i].data() == text.data();
      ApplyStep(steps_[active_steps_[s]], current[i], first_piece, target, arena);
    }
    if (target == &next) current.swap(next);
  }
}

}  // namespace kiln::tokenizer
