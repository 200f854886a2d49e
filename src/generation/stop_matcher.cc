#include "generation/stop_matcher.h"

#include <algorithm>

namespace kiln {

StopMatcher::StopMatcher(std::vector<std::string> stop_strings, bool include_stop_str)
    : include_stop_str_(include_stop_str) {
  for (auto& s : stop_strings) {
    if (s.empty()) continue;
    max_stop_len_ = std::max(max_stop_len_, s.size());
    stops_.push_back(std::move(s));
  }
}

std::string StopMatcher::Push(std::string_view text, bool check) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(text);
  // pending_ holds only a held-back tail (shorter than the longest stop string), so searching it
  // whole is cheap and finds matches that started in an earlier piece.
  pending_.append(text);
  const size_t search_from = 0;
  size_t best_pos = std::string::npos;
  const std::string* best = nullptr;
  for (const auto& s : stops_) {
    if (!check) break;
    const size_t pos = pending_.find(s, search_from);
    if (pos != std::string::npos &&
        (pos < best_pos || (pos == best_pos && s.size() > best->size()))) {
      best_pos = pos;
      best = &s;
    }
  }
  if (best != nullptr) {
    stopped_ = true;
    matched_ = *best;
    std::string out = pending_.substr(0, include_stop_str_ ? best_pos + best->size() : best_pos);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  const size_t max_hold = std::min(pending_.size(), max_stop_len_ - 1);
  for (size_t len = max_hold; len > 0; --len) {
    const std::string_view tail(pending_.data() + pending_.size() - len, len);
    const bool is_prefix = std::any_of(stops_.begin(), stops_.end(), [&](const std::string& s) {
      return s.size() > len && std::string_view(s).substr(0, len) == tail;
    });
    if (is_prefix) {
      hold = len;
      break;
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::Flush() {
  if (stopped_) return "";
  std::string out = std::move(pending_);
  pending_.clear();
  return out;
}

}  // namespace kiln
