// CreateBackend: the Backend that EngineOptions ask for (device cpu or cuda) over a loaded model,
// with the cache, scheduler and device options mapped onto the backend's own options. The one
// place that does this mapping: Engine::Create and tools that drive a Backend directly (kiln eval)
// get the same backend for the same options.
//
// Thread-safety: a function; the returned backend belongs to the caller's thread (backend.h).
#pragma once

#include <memory>

#include "backend/backend.h"
#include "kiln/options.h"
#include "kiln/status.h"
#include "model/weights.h"

namespace kiln {

// Errors: a device kiln was built without (kUnimplemented), the backend's own creation errors.
StatusOr<std::unique_ptr<Backend>> CreateBackend(std::shared_ptr<const LoadedModel> model,
                                                 const EngineOptions& options);

}  // namespace kiln
