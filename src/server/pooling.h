// The non-generative endpoints: POST /v1/classify (label probabilities from the next-token logits
// after the prompt, one forward pass, RequestKind::kScore) and POST /v1/embeddings (pooled final
// hidden states, RequestKind::kEmbed). Many inputs in one call are submitted together, so the
// engine batches them; the response is sent once every input finished.
//
// Threading: as for Generation (generation.h): engine outputs are posted to the connection's
// strand and collected there; a disconnect aborts the outstanding engine requests.
#pragma once

#include <memory>
#include <vector>

#include "server/http_server.h"

namespace kiln::server {

class OpenAiServer;

void RunClassify(OpenAiServer* server, const HttpRequest& request,
                 std::shared_ptr<HttpResponder> responder);
void RunEmbeddings(OpenAiServer* server, const HttpRequest& request,
                   std::shared_ptr<HttpResponder> responder);

// Pooling of row-major hidden states [rows, hidden_size] into one vector: "last", "mean", "first".
std::vector<float> PoolHidden(const std::vector<float>& hidden, int hidden_size,
                              const std::string& pooling);
// Truncates to `dimensions` (0 → keep) and L2-normalizes when `normalize`.
void FinishEmbedding(std::vector<float>* v, int dimensions, bool normalize);
// Label probabilities: softmax over the given logprobs.
std::vector<double> SoftmaxOver(const std::vector<float>& logprobs);
std::string Base64Floats(const std::vector<float>& v);

}  // namespace kiln::server
