// TokenConstraint: the engine's hook for constrained decoding (JSON schema, regex, choice,
// grammar). The engine owns one per constrained request; before each sampled position it asks for
// the allowed-token bitmask and after sampling it reports the chosen token. The grammar machinery
// itself lives in src/structured/; the engine only drives this interface.
//
// Thread-safety: a TokenConstraint is used by one thread at a time: the engine thread, or the
// engine's MaskWorker, which calls FillNextTokenBitmask while the engine thread runs the forward
// pass (handed over and back through the worker's mutex; engine/mask_worker.h). Different
// constraints may be used concurrently, so state they share must be immutable or synchronized.
// A TokenConstraintFactory is called on the engine thread when a request is admitted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "kiln/request.h"
#include "kiln/status.h"

namespace kiln {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Writes the allowed next tokens: bit i of word i / 32 set → token i allowed. `bitmask` holds
  // ceil(vocab_size / 32) words.
  virtual void FillNextTokenBitmask(uint32_t* bitmask) = 0;
  // Advances over a sampled token; an error finishes the request with FinishReason::kError.
  virtual Status AcceptToken(int32_t token_id) = 0;
  // True once the constrained output is complete (the request then finishes with kStop).
  virtual bool IsTerminated() const = 0;
};

// Builds the constraint of a request from its response_format (never called for kText).
// Unimplemented → Submit reports it to the caller.
using TokenConstraintFactory = std::function<StatusOr<std::unique_ptr<TokenConstraint>>(
    const ResponseFormat& format, int vocab_size)>;

}  // namespace kiln
