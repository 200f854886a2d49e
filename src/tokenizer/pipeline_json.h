// Reading tokenizer.json's pipeline components (normalizer, pre_tokenizer, decoder): each is an
// object with a "type", and "Sequence" nests a list of them. ForEachComponent flattens that.
//
// Thread-safety: pure function.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "kiln/status.h"

namespace kiln::tokenizer {

// Calls add(component, type) for every non-Sequence component of `json` in order; a Sequence
// lists its members under `list_key` ("normalizers", "pretokenizers", "decoders"). `what` names
// the component kind in error messages.
Status ForEachComponent(
    const nlohmann::json& json, std::string_view what, const char* list_key,
    const std::function<Status(const nlohmann::json&, const std::string&)>& add);

}  // namespace kiln::tokenizer
