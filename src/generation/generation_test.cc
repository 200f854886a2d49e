// kiln::Generator over a real Engine (stories260K on the CPU backend): token ids and text against
// the engine and the tokenizer run directly, streaming deltas vs the final result, stop strings,
// n choices with seed + j, chat template and assistant prefill, logprobs, length and id checks
// (with the field named), cancellation, and the executor contract.
#include "kiln/generation.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "kiln/engine.h"
#include "tests/test_util.h"

namespace kiln {
namespace {

// role: content lines; a continued final message gets no newline after it.
constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{% if not loop.last or add_generation_prompt %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

std::string ModelPath() { return testing::SharedDir() + "/models/stories260K/hf"; }

class GeneratorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(ModelPath() + "/config.json")) return;
    EngineOptions o;
    o.model.model_path = ModelPath();
    o.cache.kv_cache_memory_bytes = int64_t{64} << 20;
    o.device.num_threads = 1;
    auto engine = Engine::Create(o);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value().release();
    GeneratorOptions go;
    go.chat_template = kTemplate;
    generator_ = new Generator(engine_, go);
  }
  static void TearDownTestSuite() {
    delete generator_;
    if (engine_ != nullptr) engine_->Shutdown(/*abort_running=*/true);
    delete engine_;
    generator_ = nullptr;
    engine_ = nullptr;
  }
  void SetUp() override {
    if (engine_ == nullptr) GTEST_SKIP() << "missing " << ModelPath() << " (set KILN_SHARED)";
  }

  static GenerationRequest Greedy(std::string prompt, int max_tokens) {
    GenerationRequest r;
    r.prompts.push_back(GenerationPrompt::Text(std::move(prompt)));
    r.add_special_tokens = true;
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }
  static GenerationResult Run(GenerationRequest r) {
    auto result = generator_->Generate(std::move(r));
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? *result : GenerationResult();
  }
  static void WaitIdle() {
    for (int i = 0; i < 500; ++i) {
      const EngineMetrics m = engine_->Metrics();
      if (m.num_running == 0 && m.num_waiting == 0 && m.num_kv_blocks_used == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "engine not idle";
  }

  static Engine* engine_;
  static Generator* generator_;
};

Engine* GeneratorTest::engine_ = nullptr;
Generator* GeneratorTest::generator_ = nullptr;

TEST_F(GeneratorTest, CompletionMatchesTheEngineAndTheTokenizer) {
  const Tokenizer& tok = *generator_->tokenizer();
  const GenerationResult result = Run(Greedy("Once upon a time,", 24));
  ASSERT_EQ(result.choices.size(), 1u);
  const GenerationChoice& c = result.choices[0];

  // The engine run directly on the tokenizer's ids.
  Request direct;
  direct.prompt_token_ids = tok.Encode("Once upon a time,", true);
  direct.sampling.temperature = 0.0f;
  direct.sampling.max_tokens = 24;
  direct.sampling.ignore_eos = true;
  auto stream = engine_->Submit(direct);
  ASSERT_TRUE(stream.ok());
  std::vector<int32_t> ids;
  RequestOutput out;
  while ((*stream)->Next(&out))
    ids.insert(ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
  EXPECT_EQ(c.token_ids, ids);
  EXPECT_EQ(c.finish_reason, FinishReason::kLength);
  // The text is the continuation in context: decode(prompt + output) minus decode(prompt).
  std::vector<int32_t> all = direct.prompt_token_ids;
  all.insert(all.end(), ids.begin(), ids.end());
  const std::string prompt_text = *tok.Decode(direct.prompt_token_ids, true);
  const std::string full = *tok.Decode(all, true);
  ASSERT_EQ(full.substr(0, prompt_text.size()), prompt_text);
  EXPECT_EQ(c.text, full.substr(prompt_text.size()));
  EXPECT_EQ(c.text[0], ' ') << "the leading space of the first token is kept (context)";
  EXPECT_EQ(result.usage.prompt_tokens, static_cast<int>(direct.prompt_token_ids.size()));
  EXPECT_EQ(result.usage.completion_tokens, 24);
  EXPECT_TRUE(result.error.ok());
}

// A prompt that ends in a character the tokenizer spells with byte pieces (stories260K has no
// emoji token: 4 <0xXX> pieces) must not bring that character back with the first output token,
// plain or echoed; the same for an assistant prefill ending in one.
TEST_F(GeneratorTest, PromptEndingInBytePiecesIsNotRepeated) {
  const Tokenizer& tok = *generator_->tokenizer();
  const std::string prompt = "Once upon a time \xF0\x9F\x99\x82";  // U+1F642
  const std::vector<int32_t> prompt_ids = tok.Encode(prompt, true);
  for (bool echo : {false, true}) {
    GenerationRequest r = Greedy(prompt, 6);
    r.echo = echo;
    const GenerationResult result = Run(std::move(r));
    ASSERT_EQ(result.choices.size(), 1u);
    const GenerationChoice& c = result.choices[0];
    std::vector<int32_t> all = prompt_ids;
    all.insert(all.end(), c.token_ids.begin(), c.token_ids.end());
    const std::string prompt_text = *tok.Decode(prompt_ids, true);
    const std::string full = *tok.Decode(all, true);
    ASSERT_EQ(full.substr(0, prompt_text.size()), prompt_text);
    const std::string continuation = full.substr(prompt_text.size());
    EXPECT_EQ(c.text, echo ? prompt + continuation : continuation) << "echo " << echo;
  }
  GenerationRequest chat;
  chat.messages =
      nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Tell me a story."}}});
  chat.assistant_prefill = "Here \xF0\x9F\x99\x82";
  chat.sampling.temperature = 0.0f;
  chat.sampling.max_tokens = 4;
  chat.sampling.ignore_eos = true;
  const GenerationResult prefilled = Run(std::move(chat));
  ASSERT_EQ(prefilled.choices.size(), 1u);
  EXPECT_EQ(prefilled.choices[0].text.find("\xF0\x9F\x99\x82"), std::string::npos)
      << prefilled.choices[0].text;
}

TEST_F(GeneratorTest, StreamedDeltasConcatenateToTheResult) {
  GenerationRequest r = Greedy("Lily", 40);
  r.n = 2;
  r.sampling.temperature = 0.8f;
  r.sampling.seed = 3;
  std::mutex mu;
  std::vector<std::string> streamed(2);
  std::vector<int> finished(2, 0);
  int num_done = 0;
  GenerationCallbacks cb;
  cb.on_delta = [&](const GenerationDelta& d, const GenerationChoice& c) {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_LT(d.index, 2);
    EXPECT_EQ(finished[d.index], 0) << "delta after the final one";
    streamed[d.index] += d.text;
    EXPECT_EQ(c.text, streamed[d.index]);
    if (d.finished) ++finished[d.index];
  };
  cb.on_done = [&](const GenerationResult&) { ++num_done; };
  auto prepared = generator_->Prepare(r);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  auto gen = generator_->Start(std::move(prepared).value(), cb);
  ASSERT_TRUE(gen.ok()) << gen.status().ToString();
  const GenerationResult result = (*gen)->Wait();
  ASSERT_EQ(result.choices.size(), 2u);
  EXPECT_EQ(num_done, 1);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(finished[i], 1);
    EXPECT_EQ(result.choices[i].text, streamed[i]);
    EXPECT_EQ(result.choices[i].index, i);
    EXPECT_EQ(result.choices[i].prompt_index, 0);
  }
  // Prompt tokens count once per prompt, completion tokens per choice.
  EXPECT_EQ(result.usage.prompt_tokens, result.choices[0].usage.prompt_tokens);
  EXPECT_EQ(result.usage.completion_tokens, 80);
}

TEST_F(GeneratorTest, StopStringCutsTheTextAndReleasesTheRequest) {
  const GenerationResult full = Run(Greedy("Once upon a time", 60));
  const std::string& text = full.choices[0].text;
  // A stop string from the middle of the greedy text: the 4th word with its leading space.
  size_t pos = 0;
  for (int w = 0; w < 4; ++w) pos = text.find(' ', pos + 1);
  ASSERT_NE(pos, std::string::npos) << text;
  const size_t end = text.find(' ', pos + 1);
  const std::string stop = text.substr(pos, end - pos);

  GenerationRequest r = Greedy("Once upon a time", 60);
  r.stop = {"never appears", stop};
  const GenerationResult cut = Run(r);
  const GenerationChoice& c = cut.choices[0];
  EXPECT_EQ(c.text, text.substr(0, text.find(stop))) << "stop " << stop;
  EXPECT_EQ(c.finish_reason, FinishReason::kStop);
  EXPECT_EQ(c.matched_stop, stop);
  EXPECT_LT(c.usage.completion_tokens, 60);
  EXPECT_EQ(c.usage.completion_tokens, static_cast<int>(c.token_ids.size()));

  r.include_stop_str_in_output = true;
  EXPECT_EQ(Run(r).choices[0].text, text.substr(0, text.find(stop) + stop.size()));
  WaitIdle();
}

// Stop strings count only once more than min_tokens tokens exist (vLLM): "e" stops the greedy
// text within its first tokens, but not with min_tokens 8; the text stays a prefix of the
// unstopped one and ends right before an "e".
TEST_F(GeneratorTest, MinTokensHoldsBackStopStrings) {
  const std::string full = Run(Greedy("Once upon a time", 40)).choices[0].text;
  GenerationRequest r = Greedy("Once upon a time", 40);
  r.stop = {"e"};
  const GenerationChoice early = Run(r).choices[0];
  ASSERT_EQ(early.finish_reason, FinishReason::kStop);
  ASSERT_LE(early.usage.completion_tokens, 8) << "the test needs an early 'e': " << full;
  r.sampling.min_tokens = 8;
  const GenerationChoice held = Run(r).choices[0];
  EXPECT_EQ(held.finish_reason, FinishReason::kStop);
  EXPECT_GT(held.usage.completion_tokens, 8);
  EXPECT_GT(held.text.size(), early.text.size());
  EXPECT_EQ(full.substr(0, held.text.size()), held.text);
  EXPECT_EQ(full[held.text.size()], 'e');
  WaitIdle();
}

TEST_F(GeneratorTest, ChoiceJUsesSeedPlusJ) {
  GenerationRequest r = Greedy("The dog", 16);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 11;
  r.n = 3;
  const GenerationResult all = Run(r);
  ASSERT_EQ(all.choices.size(), 3u);
  for (int j = 0; j < 3; ++j) {
    GenerationRequest one = Greedy("The dog", 16);
    one.sampling.temperature = 1.0f;
    one.sampling.seed = 11 + j;
    const GenerationResult single = Run(one);
    EXPECT_EQ(all.choices[j].token_ids, single.choices[0].token_ids) << "choice " << j;
    EXPECT_EQ(all.choices[j].text, single.choices[0].text) << "choice " << j;
  }
  // Two prompts × n: choice index = prompt * n + j.
  r.prompts.push_back(GenerationPrompt::TokenIds({1, 450}));
  const GenerationResult two = Run(r);
  ASSERT_EQ(two.choices.size(), 6u);
  EXPECT_EQ(two.choices[4].prompt_index, 1);
  EXPECT_EQ(two.usage.prompt_tokens, two.choices[0].usage.prompt_tokens + 2);
}

TEST_F(GeneratorTest, ChatTemplateAndAssistantPrefill) {
  const Tokenizer& tok = *generator_->tokenizer();
  GenerationRequest r;
  r.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Tell a story."}}});
  r.assistant_prefill = "Once upon a";
  r.echo = true;
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = 12;
  r.sampling.ignore_eos = true;
  auto prepared = generator_->Prepare(r);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  ASSERT_EQ(prepared->prompts.size(), 1u);
  // The prefill is continued: no newline or generation prompt after it.
  EXPECT_EQ(prepared->prompts[0].token_ids,
            tok.Encode(tok.bos_token() + "user: Tell a story.\nassistant: Once upon a", false));

  // The same as a partial last assistant message with continue_final_message.
  GenerationRequest explicit_prefill = r;
  explicit_prefill.assistant_prefill.clear();
  explicit_prefill.messages.push_back({{"role", "assistant"}, {"content", "Once upon a"}});
  explicit_prefill.chat_options.continue_final_message = true;
  explicit_prefill.chat_options.add_generation_prompt = false;
  const GenerationResult a = Run(r);
  const GenerationResult b = Run(explicit_prefill);
  EXPECT_EQ(a.choices[0].token_ids, b.choices[0].token_ids);
  // echo: the reply starts with the prefill and continues it.
  EXPECT_EQ(a.choices[0].text.rfind("Once upon a", 0), 0u) << a.choices[0].text;
  EXPECT_GT(a.choices[0].text.size(), std::string("Once upon a").size());
  EXPECT_EQ(a.choices[0].text, b.choices[0].text);
}

TEST_F(GeneratorTest, LogprobsOnePerToken) {
  GenerationRequest r = Greedy("Once upon a time", 8);
  r.sampling.logprobs = 2;
  r.logprob_token_strings = {"a"};
  const GenerationResult result = Run(r);
  const GenerationChoice& c = result.choices[0];
  ASSERT_EQ(c.logprobs.size(), c.token_ids.size());
  const int32_t a_id = generator_->tokenizer()->Encode("a", false).at(0);
  for (size_t i = 0; i < c.logprobs.size(); ++i) {
    EXPECT_EQ(c.logprobs[i].chosen.token_id, c.token_ids[i]);
    EXPECT_EQ(c.logprobs[i].top.size(), 2u);
    ASSERT_EQ(c.logprobs[i].requested.size(), 1u);
    EXPECT_EQ(c.logprobs[i].requested[0].token_id, a_id);
    EXPECT_LE(c.logprobs[i].chosen.logprob, 0.0f);
  }
}

TEST_F(GeneratorTest, PromptLengthChecks) {
  const int limit = generator_->max_model_len();
  ASSERT_EQ(limit, 512);
  std::string field;
  GenerationRequest r;
  r.prompts.push_back(GenerationPrompt::TokenIds(std::vector<int32_t>(30, 5)));
  r.sampling.max_tokens = 500;
  auto p = generator_->Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(field, "prompt");
  EXPECT_NE(p.status().message().find("maximum context length is 512 tokens"), std::string::npos);
  EXPECT_NE(p.status().message().find(
                "you requested 530 tokens (30 in the prompt, 500 in the completion)"),
            std::string::npos)
      << p.status().message();
  r.sampling.max_tokens = 482;
  ASSERT_TRUE(generator_->Prepare(r).ok());

  GenerationRequest chat;
  chat.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "x"}}});
  chat.fill_max_tokens = true;  // unset → what fits
  auto c = generator_->Prepare(chat);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->prompts[0].max_tokens, limit - static_cast<int>(c->prompts[0].token_ids.size()));

  GenerationRequest empty;
  empty.prompts.push_back(GenerationPrompt::TokenIds({}));
  p = generator_->Prepare(empty, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("empty"), std::string::npos);

  // 10 MB of text is refused by its size, before (and much faster than) tokenizing it.
  GenerationRequest huge = Greedy(std::string(10 << 20, 'a'), 16);
  const auto t0 = std::chrono::steady_clock::now();
  p = generator_->Prepare(std::move(huge), &field);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(p.status().message().find("rejected without tokenizing"), std::string::npos)
      << p.status().message();
  EXPECT_EQ(field, "prompt");
  EXPECT_LT(ms, 200.0);

  // The size bound is sound: texts longer than it do encode to more than max_model_len tokens.
  const Tokenizer& tok = *generator_->tokenizer();
  const size_t bytes = generator_->max_prompt_bytes() + 1;
  std::string prose;
  while (prose.size() < bytes)
    prose += "Once upon a time there was a girl. \xe4\xbd\xa0\xf0\x9f\x98\x80 ";
  for (const std::string& text : {std::string(bytes, 'a'), std::string(bytes, ' '), prose}) {
    EXPECT_GT(tok.Encode(text, false).size(), static_cast<size_t>(limit)) << text.substr(0, 40);
  }
}

TEST_F(GeneratorTest, ErrorsNameTheField) {
  std::string field;
  GenerationRequest r = Greedy("x", 4);
  r.sampling.stop_token_ids = {5000};
  auto p = generator_->Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(field, "stop_token_ids");
  EXPECT_NE(p.status().message().find("token id 5000 is outside the vocabulary (size 512)"),
            std::string::npos);

  r = Greedy("x", 4);
  r.logprob_token_strings = {"once upon"};
  p = generator_->Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(field, "logprob_token_ids");
  EXPECT_NE(p.status().message().find("not one"), std::string::npos);

  r = GenerationRequest();
  r.prompts.push_back(GenerationPrompt::TokenIds({1, 600}));
  p = generator_->Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(field, "prompt");

  // No chat template: the tokenizer has none and this generator sets none.
  Generator plain(engine_);
  r = GenerationRequest();
  r.messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", "x"}}});
  p = plain.Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(field, "messages");
  EXPECT_NE(p.status().message().find("no chat template"), std::string::npos);
  r.chat_options.chat_template = "{{ messages[0]['content'] }}";  // per request
  EXPECT_TRUE(plain.Prepare(r).ok());
  r.chat_options.chat_template = "{{ messages[0]['content'] | no_such_filter }}";
  p = plain.Prepare(r, &field);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(field, "chat_template") << p.status().ToString();
  // Messages a template would skip (no role, not an object) are refused, not dropped.
  r.chat_options.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
  for (const char* bad_messages : {R"([{"content": "hi"}])", R"([1, 2])", R"([{"role": 3}])"}) {
    r.messages = nlohmann::ordered_json::parse(bad_messages);
    p = plain.Prepare(r, &field);
    ASSERT_FALSE(p.ok()) << bad_messages;
    EXPECT_EQ(field, "messages");
    EXPECT_NE(p.status().message().find("messages[0]"), std::string::npos) << p.status().ToString();
  }

  // An engine refusal at Start (parameters Prepare does not judge): Engine::Submit's error, and
  // nothing runs.
  GenerationRequest bad = Greedy("x", 4);
  bad.n = 2;
  bad.sampling.top_p = 0.0f;
  auto prepared = generator_->Prepare(bad);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  auto started = generator_->Start(std::move(prepared).value(), {});
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(started.status().message().find("top_p"), std::string::npos);
  EXPECT_EQ(started.status().message().find("of the batch"), std::string::npos)
      << started.status().message();
  WaitIdle();
}

TEST_F(GeneratorTest, CancelEndsWithAbortAndStillReportsTheResult) {
  GenerationRequest r = Greedy("Once", 400);
  std::mutex mu;
  std::condition_variable cv;
  bool first = false;
  int num_done = 0;
  GenerationCallbacks cb;
  cb.on_delta = [&](const GenerationDelta&, const GenerationChoice&) {
    std::lock_guard<std::mutex> lock(mu);
    first = true;
    cv.notify_all();
  };
  cb.on_done = [&](const GenerationResult&) { ++num_done; };
  auto gen = generator_->Start(*generator_->Prepare(r), cb);
  ASSERT_TRUE(gen.ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return first; });
  }
  (*gen)->Cancel();
  const GenerationResult result = (*gen)->Wait();
  EXPECT_TRUE(result.cancelled);
  EXPECT_EQ(result.choices[0].finish_reason, FinishReason::kAbort);
  EXPECT_LT(result.choices[0].token_ids.size(), 400u);
  EXPECT_EQ(num_done, 1);
  WaitIdle();
}

// Events run through the executor, in order, never concurrently.
TEST_F(GeneratorTest, EventsRunOnTheExecutor) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  bool stop = false;
  std::thread worker([&] {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      auto fn = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  });
  const std::thread::id worker_id = worker.get_id();
  int num_events = 0;
  bool all_on_worker = true;
  GenerationCallbacks cb;
  cb.executor = [&](std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(std::move(fn));
    cv.notify_all();
  };
  cb.on_delta = [&](const GenerationDelta&, const GenerationChoice&) {
    ++num_events;
    all_on_worker = all_on_worker && std::this_thread::get_id() == worker_id;
  };
  cb.on_done = [&](const GenerationResult&) {
    all_on_worker = all_on_worker && std::this_thread::get_id() == worker_id;
  };
  GenerationRequest r = Greedy("Once", 20);
  r.n = 3;
  auto gen = generator_->Start(*generator_->Prepare(r), cb);
  ASSERT_TRUE(gen.ok());
  const GenerationResult result = (*gen)->Wait();
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  worker.join();
  EXPECT_TRUE(all_on_worker);
  EXPECT_GE(num_events, 3);
  EXPECT_EQ(result.choices.size(), 3u);
}

}  // namespace
}  // namespace kiln
