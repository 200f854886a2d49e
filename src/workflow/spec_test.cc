// Spec parsing, validation (errors name node and field), templates, JSON Schema checks, WAV, TTS
// and the Dify importer.
#include "workflow/spec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "workflow/dify_import.h"
#include "workflow/executor.h"
#include "workflow/json_check.h"
#include "workflow/template.h"
#include "workflow/tts.h"
#include "workflow/wav.h"
#include "workflow/workflow.h"

namespace kiln::workflow {
namespace {

std::string SharedDir() {
  if (const char* s = std::getenv("KILN_SHARED")) return s;
  if (const char* s = std::getenv("KILN_SOURCE_DIR")) return std::string(s) + "/../shared";
  return "../shared";
}

Status CompileText(const std::string& yaml) {
  auto spec = ParseSpec(yaml);
  if (!spec.ok()) return spec.status();
  auto w = Workflow::Compile(std::move(*spec));
  return w.ok() ? Status::Ok() : w.status();
}

const char* kGood = R"(
name: greet
inputs:
  name: {type: string, required: true}
  times: {type: integer, default: 2}
nodes:
  - {id: start, type: start}
  - id: hello
    type: template
    template: "Hello {{ inputs.name }} x{{ inputs.times }}"
  - id: route
    type: condition
    cases:
      - {id: long, when: "nodes.hello.text | length > 12"}
  - {id: out_long, type: end, outputs: {msg: "{{ nodes.hello.text }}", kind: long}}
  - {id: out_short, type: end, outputs: {msg: "{{ nodes.hello.text }}", kind: short}}
edges:
  - {from: start, to: hello}
  - {from: hello, to: route}
  - {from: route, to: out_long, branch: long}
  - {from: route, to: out_short, branch: else}
)";

TEST(WorkflowSpecTest, ParsesYamlWithTypes) {
  auto spec = ParseSpec(kGood);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "greet");
  ASSERT_EQ(spec->inputs.size(), 2u);
  EXPECT_TRUE(spec->inputs[0].required);
  EXPECT_EQ(spec->inputs[1].default_value, Json(2));  // an integer, not the string "2"
  EXPECT_EQ(spec->nodes.size(), 5u);
  EXPECT_EQ(spec->edges[2].branch, "long");
  EXPECT_TRUE(CompileText(kGood).ok());
}

TEST(WorkflowSpecTest, JsonAndYamlGiveTheSameSpec) {
  auto yaml = ParseDocument(kGood);
  ASSERT_TRUE(yaml.ok());
  auto json = ParseDocument(yaml->dump());
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*yaml, *json);
  auto round = ParseDocument(DumpYaml(*yaml));
  ASSERT_TRUE(round.ok()) << round.status().ToString();
  EXPECT_EQ(*round, *yaml);
}

void ExpectRejected(const std::string& yaml, const std::string& node, const std::string& field) {
  Status s = CompileText(yaml);
  ASSERT_FALSE(s.ok()) << yaml;
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("node '" + node + "'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("field '" + field), std::string::npos) << s.message();
}

TEST(WorkflowSpecTest, InvalidSpecsNameNodeAndField) {
  const std::string head = "nodes:\n  - {id: start, type: start}\n";
  const std::string tail = "  - {id: out, type: end, outputs: {x: '1'}}\n";
  ExpectRejected(head + "  - {id: a, type: llm, prompt: hi, sampling: {temperature: 9}}\n" + tail,
                 "a", "sampling.temperature");
  ExpectRejected(head + "  - {id: a, type: llm, promt: hi}\n" + tail, "a", "promt");
  ExpectRejected(head + "  - {id: a, type: llm}\n" + tail, "a", "messages");
  ExpectRejected(head + "  - {id: a, type: template, template: '{{ nodes.nope.text }}'}\n" + tail,
                 "a", "template");
  ExpectRejected(head + "  - {id: a, type: template, template: '{% if %}'}\n" + tail, "a",
                 "template");
  ExpectRejected(head + "  - {id: a, type: frobnicate}\n" + tail, "a", "type");
  ExpectRejected(head + "  - {id: a, type: http, url: 'ftp://x'}\n" + tail, "a", "url");
  ExpectRejected(
      head + "  - {id: a, type: template, template: x, retry: {max_attempts: 0}}\n" + tail, "a",
      "retry.max_attempts");
  ExpectRejected(
      head + "  - {id: a, type: template, template: x, fallback: {models: [m]}}\n" + tail, "a",
      "fallback.models");
  ExpectRejected(head + "  - {id: a, type: tts, text: hi, style: grumpy}\n" + tail, "a", "style");
  ExpectRejected(
      head + "  - {id: a, type: llm, prompt: hi, response_format: {type: json_schema}}\n" + tail,
      "a", "response_format.json_schema.schema");
  ExpectRejected(head + "  - {id: a, type: start}\n" + tail, "a", "type");  // a second start
  // A reference to a node that runs later.
  ExpectRejected(
      "nodes:\n  - {id: start, type: start}\n"
      "  - {id: a, type: template, template: '{{ nodes.b.text }}'}\n"
      "  - {id: b, type: template, template: x}\n" +
          tail,
      "a", "template");
  // A cycle.
  ExpectRejected(
      "nodes:\n  - {id: start, type: start}\n  - {id: a, type: template, template: x}\n"
      "  - {id: b, type: template, template: x}\n" +
          tail +
          "edges:\n  - {from: start, to: a}\n  - {from: a, to: b}\n  - {from: b, to: a}\n"
          "  - {from: b, to: out}\n",
      "a", "edges");
  // A condition edge without a branch.
  ExpectRejected(
      "nodes:\n  - {id: start, type: start}\n  - {id: c, type: condition, if: 'true'}\n" + tail +
          "edges:\n  - {from: start, to: c}\n  - {from: c, to: out}\n",
      "c", "edges");
}

TEST(WorkflowSpecTest, StructuralErrorsNameTheirPlace) {
  auto s =
      ParseSpec("nodes:\n  - {id: start, type: start}\nedges:\n  - {from: start, to: ghost}\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("edges[0].to"), std::string::npos) << s.status().message();
  s = ParseSpec("nodes: [{id: start, type: start}, {id: start, type: end}]");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("duplicate"), std::string::npos);
  s = ParseSpec("nodes: [{id: 'a b', type: start}]");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("field 'id'"), std::string::npos);
  // Regression: a node named like a dict method (nodes.get is the method) is refused.
  s = ParseSpec("nodes: [{id: start, type: start}, {id: get, type: store, key: k}]");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("node 'get': field 'id'"), std::string::npos)
      << s.status().message();
  s = ParseSpec("inputs: {items: string}\nnodes: [{id: start, type: start}]");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("inputs.items"), std::string::npos) << s.status().message();
  s = ParseSpec("nodes: [oops: {]");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("line"), std::string::npos) << s.status().message();
  EXPECT_FALSE(CompileText("nodes: [{id: start, type: start}]").ok());  // no end
}

// A chain start → t0 → … → t{n-1} → out as JSON; every node reads the one before it and the
// first one.
std::string ChainSpec(int n) {
  std::string s = R"({"name":"chain","nodes":[{"id":"start","type":"start"})";
  for (int i = 0; i < n; ++i) {
    const std::string prev = i == 0 ? "" : "{{ nodes.t" + std::to_string(i - 1) + ".text }}";
    const std::string first = i <= 1 ? "" : "{{ nodes.t0.text }}";
    s += R"(,{"id":"t)" + std::to_string(i) + R"(","type":"template","template":"x)" + prev +
         first + R"("})";
  }
  return s + R"(,{"id":"out","type":"end"}]})";
}

// Regression: a JSON spec nested 200,000 deep overflowed the parser's stack (YAML had a limit,
// JSON none); a 200,000-node chain overflowed the recursive cycle check; per-node ancestor sets
// took memory quadratic in the node count.
TEST(WorkflowSpecTest, DeepAndLargeSpecsAreRefusedClearly) {
  const std::string deep = R"({"name":"deep","description":)" + std::string(200000, '[') +
                           std::string(200000, ']') + R"(,"nodes":[]})";
  auto d = ParseSpec(deep);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("nests deeper than 64 levels"), std::string::npos)
      << d.status().message();
  const std::string ok_depth =
      R"({"description":)" + std::string(60, '[') + std::string(60, ']') +
      R"(,"nodes":[{"id":"start","type":"start"},{"id":"o","type":"end"}]})";
  EXPECT_TRUE(ParseSpec(ok_depth).ok());

  for (const int n : {kMaxNodes - 1, 200000}) {  // + start and out
    auto s = ParseSpec(ChainSpec(n));
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_NE(s.status().message().find("at most 2000 nodes"), std::string::npos)
        << s.status().message();
  }
  // The largest chain compiles: an iterative search, one reachability pass per node read.
  const auto t0 = std::chrono::steady_clock::now();
  auto s = ParseSpec(ChainSpec(kMaxNodes - 2));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto w = Workflow::Compile(std::move(*s));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->num_nodes(), kMaxNodes);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
  // The reads are still checked: the first node reading the last one is refused.
  std::string back = ChainSpec(kMaxNodes - 2);
  back.replace(back.find(R"("template":"x")"), 14,
               R"("template":"x{{ nodes.t)" + std::to_string(kMaxNodes - 3) + R"(.text }}")");
  Status bad = CompileText(back);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("node 't0': field 'template': reads nodes.t1997, which does not "
                               "run before this node"),
            std::string::npos)
      << bad.message();
}

// Regression: a condition's fallback.default with a non-string branch ({branch: false}) aborted the
// run when it was used (the server with it); true/false name the if-branches, anything else is
// refused at compile.
TEST(WorkflowSpecTest, ConditionDefaultMustNameOneOfItsBranches) {
  const std::string yaml = R"(
nodes:
  - {id: start, type: start}
  - {id: route, type: condition, if: "inputs.x.nope.deeper", fallback: {default: DEFAULT}}
  - {id: yes, type: end, outputs: {r: "yes"}}
  - {id: no, type: end, outputs: {r: "no"}}
edges:
  - {from: start, to: route}
  - {from: route, to: yes, branch: "true"}
  - {from: route, to: no, branch: "false"}
)";
  auto with = [&](const std::string& d) {
    std::string y = yaml;
    return y.replace(y.find("DEFAULT"), 7, d);
  };
  auto spec = ParseSpec(with("{branch: false}"));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto w = Workflow::Compile(std::move(*spec));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ((*w)->node_spec(1).fallback.default_output, (Json{{"branch", "false"}}));
  Services services{ServicesOptions{}};
  RunOptions o;
  o.inputs = {{"x", "a"}};  // "a".nope.deeper fails: the default chooses the branch
  RunResult r = Executor(&services).Run(**w, std::move(o));
  ASSERT_EQ(r.status, "succeeded") << r.error;
  EXPECT_EQ(r.outputs, (Json{{"r", "no"}}));
  EXPECT_EQ(r.nodes[1].path, "default");
  EXPECT_TRUE(CompileText(with("{branch: \"true\"}")).ok());
  ExpectRejected(with("{branch: 7}"), "route", "fallback.default.branch");
  ExpectRejected(with("{branch: maybe}"), "route", "fallback.default.branch");
  ExpectRejected(with("{text: x}"), "route", "fallback.default.branch");
  ExpectRejected(with("\"true\""), "route", "fallback.default.branch");
}

TEST(WorkflowTemplateTest, RendersValuesAndExpressions) {
  const Json ctx = {{"inputs", {{"name", "Ada"}, {"n", 3}}},
                    {"nodes", {{"cls", {{"label", "news"}, {"json", {{"a", 1}}}}}}}};
  auto t = Template::Compile("Hi {{ inputs.name }}, {{ nodes.cls.label | upper }}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t->Render(ctx), "Hi Ada, NEWS");
  EXPECT_EQ(t->node_refs(), std::set<std::string>{"cls"});
  auto v = Template::Compile("{{ nodes.cls.json }}");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v->RenderValue(ctx), (Json{{"a", 1}}));  // stays an object
  auto idx = Template::Compile("{{ nodes.cls.json.a }}");
  EXPECT_EQ(*idx->RenderValue(ctx), Json(1));
  // An index beyond any integer is refused when the template is compiled.
  auto huge = Template::Compile("{{ inputs.list[99999999999999999999999] }}");
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kInvalidArgument) << huge.status().ToString();
  auto missing = Template::Compile("{{ nodes.cls.nope | default('none') }}");  // Jinja's semantics
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(*missing->Render(ctx), "none");
  auto n = Template::Compile("{{ inputs.n * 2 }}");
  EXPECT_EQ(*n->RenderValue(ctx), Json(6));
  auto e = Expression::Compile("nodes.cls.label == 'news' and inputs.n > 2");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(*e->Eval(ctx));
  auto bad = Template::Compile("{{ inputs.name.missing.deeper }}");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad->Render(ctx).ok());
  auto literal = Template::Compile("plain text");
  EXPECT_TRUE(literal->is_literal());
}

// Regression: printing an undefined value (a misspelt field, an undeclared input) rendered ""
// silently; it is an error that quotes the expression. Tests of Undefined still work.
TEST(WorkflowTemplateTest, PrintingAnUndefinedValueIsAnErrorNamingTheExpression) {
  const Json ctx = {{"inputs", {{"x", "a"}}},
                    {"nodes", {{"t", {{"text", "hello"}}}}},
                    {"sys", {{"run_id", "r1"}}}};
  for (const std::string expr : {"{{ nodes.t.txt }}", "{{ inputs.missing }}", "{{ sys.nope }}"}) {
    auto t = Template::Compile("x=" + expr + ".");
    ASSERT_TRUE(t.ok());
    auto r = t->Render(ctx);
    ASSERT_FALSE(r.ok()) << expr << " rendered '" << *r << "'";
    EXPECT_NE(r.status().message().find(expr), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("undefined"), std::string::npos) << r.status().message();
    auto v = Template::Compile(expr);  // a value template
    ASSERT_TRUE(v.ok());
    auto rv = v->RenderValue(ctx);
    ASSERT_FALSE(rv.ok());
    EXPECT_NE(rv.status().message().find(expr), std::string::npos) << rv.status().message();
  }
  auto line2 = Template::Compile("ok\n  {{ nodes.t.text }} {{ nodes.t.txt }}");
  ASSERT_TRUE(line2.ok());
  auto r2 = line2->Render(ctx);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("line 2, column 22, in {{ nodes.t.txt }}"),
            std::string::npos)
      << r2.status().message();
  for (const auto& [source, want] : std::vector<std::pair<std::string, std::string>>{
           {"{{ (nodes.a or nodes.t).text }}", "hello"},
           {"{{ nodes.a.text if nodes.a is defined else 'none' }}", "none"},
           {"{{ nodes.t.txt | default('d') }}", "d"},
           {"{% if nodes.t.txt %}yes{% else %}no{% endif %}", "no"},
           {"{{ inputs.missing is defined }}", "False"}}) {
    auto t = Template::Compile(source);
    ASSERT_TRUE(t.ok()) << source;
    auto r = t->Render(ctx);
    ASSERT_TRUE(r.ok()) << source << ": " << r.status().ToString();
    EXPECT_EQ(*r, want) << source;
  }
}

// Regression: template slots were marked in band as {"$tmpl": N} objects, so a spec holding
// such a literal object rendered another template (or read past the list and crashed).
TEST(WorkflowTemplateTest, TreeKeepsLiteralObjectsThatLookLikeSlots) {
  const Json value = Json::parse(R"({"literal": {"$tmpl": 100000000}, "zero": {"$tmpl": 0},
    "x": "{{ inputs.x }}", "list": ["plain", "{{ inputs.x }}!", {"$tmpl": 1}],
    "a/b~c": {"0": "{{ inputs.x }}"}})");  // parsed: the numbers are unsigned, as in a spec file
  auto tree = TemplateTree::Compile(value);
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto out = tree->Render({{"inputs", {{"x", "hi"}}}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  Json want = value;
  want["x"] = "hi";
  want["list"][1] = "hi!";
  want["a/b~c"]["0"] = "hi";
  EXPECT_EQ(*out, want);
}

TEST(WorkflowJsonCheckTest, ChecksSchemas) {
  const Json schema = Json::parse(R"({"type":"object","required":["label"],
    "properties":{"label":{"enum":["news","sports"]},"score":{"type":"number","minimum":0,"maximum":1}},
    "additionalProperties":false})");
  EXPECT_EQ(CheckJsonSchema(Json::parse(R"({"label":"news","score":0.5})"), schema), "");
  EXPECT_NE(CheckJsonSchema(Json::parse(R"({"score":0.5})"), schema), "");
  EXPECT_NE(CheckJsonSchema(Json::parse(R"({"label":"cats"})"), schema), "");
  EXPECT_NE(CheckJsonSchema(Json::parse(R"({"label":"news","score":2})"), schema), "");
  EXPECT_NE(CheckJsonSchema(Json::parse(R"({"label":"news","x":1})"), schema), "");
  EXPECT_NE(CheckJsonSchema(Json::parse("[1]"), schema), "");
}

TEST(WorkflowWavTest, WriteThenReadGivesTheDuration) {
  std::vector<int16_t> samples(22050 * 3 / 2, 7);
  const std::string wav = WriteWav(samples, 22050);
  auto info = ReadWavInfo(wav);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->sample_rate, 22050);
  EXPECT_EQ(info->num_channels, 1);
  EXPECT_EQ(info->bits_per_sample, 16);
  EXPECT_DOUBLE_EQ(info->duration_s, 1.5);
  EXPECT_EQ(*Base64Decode(Base64Encode(wav)), wav);
  EXPECT_FALSE(ReadWavInfo("RIFFxxxxWAVE").ok());
}

TEST(WorkflowTtsTest, SynthesizesSpeechWithStyles) {
  EXPECT_EQ(StyledTextToSsml("[cheerful]Hi & bye", ""),
            "<speak><prosody rate=\"110%\" pitch=\"+20%\" volume=\"+10%\">Hi &amp; "
            "bye</prosody></speak>");
  TtsOptions o;
  auto slow = Synthesize("The quick brown fox jumps over the lazy dog.", o,
                         std::chrono::steady_clock::time_point::max(), nullptr);
  ASSERT_TRUE(slow.ok()) << slow.status().ToString();
  auto info = ReadWavInfo(slow->wav);
  ASSERT_TRUE(info.ok());
  EXPECT_NEAR(info->duration_s, slow->duration_s, 1e-9);
  EXPECT_GT(info->duration_s, 1.0);
  EXPECT_LT(info->duration_s, 6.0);
  o.rate_wpm = 350;  // faster speech is shorter
  auto fast = Synthesize("The quick brown fox jumps over the lazy dog.", o,
                         std::chrono::steady_clock::time_point::max(), nullptr);
  ASSERT_TRUE(fast.ok());
  EXPECT_LT(fast->duration_s, slow->duration_s * 0.8);
  o.voice = "no-such-voice";
  EXPECT_FALSE(Synthesize("x", o, std::chrono::steady_clock::time_point::max(), nullptr).ok());
}

TEST(WorkflowDifyImportTest, ImportsTheSharedChatPartner) {
  const std::string path = SharedDir() + "/workflows/dify_chat_partner.yml";
  std::ifstream in(path);
  if (!in) GTEST_SKIP() << path << " missing (set KILN_SHARED)";
  std::stringstream ss;
  ss << in.rdbuf();
  DifyImportOptions o;
  o.model = "stories";
  auto r = ImportDify(ss.str(), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto spec = ParseSpec(r->yaml);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString() << "\n" << r->yaml;
  const NodeSpec* llm = spec->FindNode("llm_1711111111112");
  ASSERT_NE(llm, nullptr) << r->yaml;
  EXPECT_EQ(llm->config["model"], "stories");
  EXPECT_EQ(llm->config["system"],
            "You are Mia, a cheerful friend who loves hiking. Reply in two sentences.");
  EXPECT_EQ(llm->config["sampling"]["max_tokens"], 128);
  const NodeSpec* answer = spec->FindNode("answer");
  ASSERT_NE(answer, nullptr);
  EXPECT_EQ(answer->config["answer"], "{{ nodes.llm_1711111111112.text }}");
  ASSERT_NE(spec->FindNode("tts"), nullptr);  // features.text_to_speech
  EXPECT_TRUE(Workflow::Compile(std::move(*spec)).ok());
}

TEST(WorkflowDifyImportTest, NamesUnsupportedNodes) {
  const char* doc = R"(
kind: app
app: {mode: workflow, name: x}
workflow:
  graph:
    edges: []
    nodes:
      - {id: '1', data: {type: start, title: Start, variables: []}}
      - {id: '2', data: {type: code, title: Run Python}}
      - {id: '3', data: {type: knowledge-retrieval, title: Search}}
)";
  auto r = ImportDify(doc, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'Run Python' (id 2, type code)"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("knowledge-retrieval"), std::string::npos);
}

// Fields of a type Dify never writes are the file's error, not an abort.
TEST(WorkflowDifyImportTest, FieldsOfTheWrongTypeAreAnError) {
  for (const char* nodes :
       {"[{id: '1', data: {type: start, title: 7, variables: []}}]",
        "[{id: '1', data: {type: start, title: S, variables: [{variable: [1], type: 3}]}}]",
        "[{id: '1', data: {type: llm, title: L, model: {name: {a: 1}}}}]"}) {
    const std::string doc = std::string("kind: app\napp: {mode: workflow, name: x}\n") +
                            "workflow:\n  graph:\n    edges: []\n    nodes: " + nodes + "\n";
    auto r = ImportDify(doc, {});
    ASSERT_FALSE(r.ok()) << nodes;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  }
}

TEST(WorkflowDifyImportTest, ConvertsIfElseTemplateAndHttp) {
  const char* doc = R"(
kind: app
app: {mode: workflow, name: router}
workflow:
  graph:
    edges:
      - {source: '1', target: '2', sourceHandle: source}
      - {source: '2', target: '3', sourceHandle: 'true'}
      - {source: '2', target: '4', sourceHandle: 'false'}
      - {source: '3', target: '5', sourceHandle: source}
      - {source: '4', target: '5', sourceHandle: source}
    nodes:
      - {id: '1', data: {type: start, variables: [{variable: topic, type: text-input, required: true}]}}
      - id: '2'
        data:
          type: if-else
          cases:
            - case_id: 'true'
              logical_operator: and
              conditions: [{variable_selector: ['1', topic], comparison_operator: contains, value: sport}]
      - id: '3'
        data:
          type: template-transform
          template: 'Sport: {{ t }}'
          variables: [{variable: t, value_selector: ['1', topic]}]
      - id: '4'
        data: {type: http-request, method: post, url: 'http://127.0.0.1:9/x', headers: 'X-A:{{#1.topic#}}',
               body: {type: json, data: '{"q": "{{#1.topic#}}"}'}, timeout: {connect: 1, read: 2}}
      - id: '5'
        data: {type: end, outputs: [{variable: out, value_selector: ['3', output]}]}
)";
  auto r = ImportDify(doc, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto spec = SpecFromJson(r->spec);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->FindNode("condition_2")->config["cases"][0]["when"],
            "(\"sport\" in (inputs.topic | string))");
  EXPECT_EQ(spec->FindNode("template_3")->config["template"],
            "{% set t = inputs.topic %}Sport: {{ t }}");
  EXPECT_EQ(spec->FindNode("http_4")->config["headers"]["X-A"], "{{ inputs.topic }}");
  EXPECT_EQ(spec->FindNode("end_5")->config["outputs"]["out"], "{{ nodes.template_3.text }}");
  EXPECT_EQ(spec->edges[2].branch, "else");
  EXPECT_TRUE(Workflow::Compile(std::move(*spec)).ok());
}

}  // namespace
}  // namespace kiln::workflow
