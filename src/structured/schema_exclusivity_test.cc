// oneOf: compiled as a union only when the branches are provably exclusive (schema_exclusivity.h),
// otherwise InvalidArgument naming oneOf and the overlapping branches. Accept/reject strings for
// every kind of proof, the restriction that keeps a key out of a branch's extra properties, and
// the overlapping schemas that must be refused.
#include "structured/schema_exclusivity.h"

#include <gtest/gtest.h>

#include <chrono>

#include "structured/json_schema.h"
#include "structured/structured_output.h"
#include "structured/test_vocab.h"

namespace kiln::structured {
namespace {

GrammarCompiler& Compiler() { return testing::TinyJsonCompiler(); }

StatusOr<std::shared_ptr<const CompiledGrammar>> CompileSchema(const std::string& schema) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = schema;
  return Compiler().Compile(f);
}

bool Complete(const std::shared_ptr<const CompiledGrammar>& g, const std::string& s) {
  return testing::CompleteOutput(g, s);
}

struct Case {
  const char* name;
  const char* schema;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

TEST(OneOfTest, ExclusiveBranchesCompileAndMatchExactlyOne) {
  const std::vector<Case> cases = {
      {"types",
       R"({"oneOf":[{"type":"string","maxLength":2},{"type":"null"},{"type":"array"}]})",
       {R"("ab")", "null", "[1]"},
       {R"("abc")", "1", "{}"}},
      {"integer_ranges",
       R"({"oneOf":[{"type":"integer","maximum":9},{"type":"integer","minimum":10},
           {"type":"string","maxLength":1}]})",
       {"9", "10", "-3", "12345", R"("x")"},
       {R"("xy")", "9.5"}},
      {"number_exclusive_bound",
       R"({"oneOf":[{"type":"number","exclusiveMaximum":1},{"type":"number","minimum":1}]})",
       {"0.5", "1", "1.5", "-2"},
       {"\"1\""}},
      {"integer_rounding",  // integers below 4.5 and numbers from 4.5 do not meet
       R"({"oneOf":[{"type":"integer","exclusiveMaximum":4.5},{"type":"number","minimum":4.5}]})",
       {"4", "5", "5.5"},  // (kiln emits decimals I.F only when all of (I, I+1) is in range)
       {"null"}},
      {"enums",
       R"({"oneOf":[{"enum":["a","b"]},{"enum":["c",1]},{"type":"boolean"},{"const":2}]})",
       {R"("a")", R"("c")", "1", "2", "true"},
       {R"("d")", "3", "null"}},
      {"string_lengths",
       R"({"oneOf":[{"type":"string","maxLength":2},{"type":"string","minLength":3,
           "maxLength":4}]})",
       {R"("")", R"("ab")", R"("abc")", R"("abcd")"},
       {R"("abcde")"}},
      {"array_sizes",
       R"({"oneOf":[{"type":"array","items":{"type":"integer"},"maxItems":1},
           {"type":"array","items":{"type":"string"},"minItems":2,"maxItems":2}]})",
       {"[]", "[1]", R"(["a","b"])"},
       {"[1,2]", R"(["a"])"}},
      {"required_key_not_emitted",  // additionalProperties false on both sides
       R"({"oneOf":[{"type":"object","properties":{"card":{"type":"string","maxLength":4}},
           "required":["card"],"additionalProperties":false},
           {"type":"object","properties":{"iban":{"type":"string","maxLength":4}},
           "required":["iban"],"additionalProperties":false}]})",
       {R"({"card":"1234"})", R"({"iban":"DE12"})"},
       {R"({"card":"1","iban":"2"})", "{}"}},
      {"absent_additional_properties",  // kiln emits no extra keys when it is absent
       R"({"oneOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
           {"type":"object","properties":{"b":{"type":"integer"}},"required":["b"]}]})",
       {R"({"a":1})", R"({"b":2})"},
       {R"({"a":1,"b":2})", R"({"b":2,"a":1})"}},
      {"pydantic_discriminated_union",
       R"({"type":"object","properties":{"pet":{"oneOf":[{"$ref":"#/$defs/Cat"},
           {"$ref":"#/$defs/Dog"}],"discriminator":{"propertyName":"pet_type",
           "mapping":{"cat":"#/$defs/Cat","dog":"#/$defs/Dog"}}}},"required":["pet"],
           "$defs":{"Cat":{"title":"Cat","type":"object","properties":{"pet_type":{
           "const":"cat","title":"Pet Type","type":"string"},"meows":{"type":"integer"}},
           "required":["pet_type","meows"],"additionalProperties":true},
           "Dog":{"title":"Dog","type":"object","properties":{"pet_type":{"enum":["dog"]},
           "barks":{"type":"number"}},"required":["pet_type","barks"],
           "additionalProperties":true}}})",
       {R"({"pet":{"pet_type":"cat","meows":3}})", R"({"pet":{"pet_type":"dog","barks":1.5}})",
        R"({"pet":{"pet_type":"cat","meows":3,"name":"x"}})"},
       {R"({"pet":{"pet_type":"cat","barks":1}})", R"({"pet":{"pet_type":"bird","meows":1}})"}},
      {"siblings_apply_to_every_branch",
       R"({"type":"object","properties":{"kind":{"type":"string"}},"required":["kind"],
           "oneOf":[{"properties":{"kind":{"const":"x"}}},{"properties":{"kind":{"const":"y"}}}]})",
       {R"({"kind":"x"})", R"({"kind":"y"})"},
       {R"({"kind":"z"})"}},
      {"nested_anyof_branch",
       R"({"oneOf":[{"anyOf":[{"type":"integer"},{"type":"boolean"}]},{"type":"string"}]})",
       {"1", "true", R"("s")"},
       {"null"}},
      {"restricted_extra_keys",
       // Branch 0 allows extra keys; branch 1 requires "b". kiln keeps "b" out of branch 0's
       // extra keys, so no generated branch-0 object is valid under branch 1.
       R"({"oneOf":[{"type":"object","properties":{"a":{"type":"string","maxLength":3}},
           "required":["a"],"additionalProperties":{"type":"integer"}},
           {"type":"object","properties":{"b":{"type":"integer"}},"required":["b"]}]})",
       {R"({"a":"x"})", R"({"a":"x","c":1})", R"({"a":"x","bb":1})", R"({"a":"x","":1})",
        R"({"b":2})"},
       {R"({"a":"x","b":1})", R"({"b":2,"a":"x"})", R"({"a":"x","c":1,"b":1})"}},
  };
  for (const Case& c : cases) {
    auto g = CompileSchema(c.schema);
    ASSERT_TRUE(g.ok()) << c.name << ": " << g.status().ToString();
    for (const auto& s : c.accept) EXPECT_TRUE(Complete(*g, s)) << c.name << " should accept " << s;
    for (const auto& s : c.reject) {
      EXPECT_FALSE(Complete(*g, s)) << c.name << " should reject " << s;
    }
  }
}

TEST(OneOfTest, OverlappingBranchesAreAnErrorNamingThem) {
  struct Bad {
    const char* name;
    const char* schema;
    const char* branches;
  };
  const std::vector<Bad> bad = {
      {"integer_in_number", R"({"oneOf":[{"type":"integer"},{"type":"number"}]})",
       "branches 0 and 1"},
      {"empty_object_matches_both",
       R"({"oneOf":[{"type":"object","properties":{"a":{"type":"string"}}},
           {"type":"object","properties":{"b":{"type":"string"}}}]})",
       "branches 0 and 1"},
      {"third_branch_overlaps_first",
       R"({"oneOf":[{"type":"string"},{"type":"integer"},{"type":"string","maxLength":3}]})",
       "branches 0 and 2"},
      {"shared_enum_value", R"({"oneOf":[{"enum":["a","b"]},{"enum":["b","c"]}]})",
       "branches 0 and 1"},
      {"shared_range_end",
       R"({"oneOf":[{"type":"integer","minimum":0,"maximum":10},{"type":"integer","minimum":10}]})",
       "branches 0 and 1"},
      {"untyped_branch_accepts_strings",
       R"({"oneOf":[{"type":"string"},{"properties":{"a":{"type":"integer"}}}]})",
       "branches 0 and 1"},
      {"same_discriminator",
       R"({"oneOf":[{"type":"object","properties":{"k":{"const":"x"}},"required":["k"]},
           {"type":"object","properties":{"k":{"const":"x"},"v":{"type":"integer"}},
           "required":["k"]}]})",
       "branches 0 and 1"},
      {"superset_branch",
       // Branch 1's objects carry "a", and branch 0 accepts any extra key: {"a":"","b":1} is
       // valid under both, and kiln cannot keep "b" out of branch 1, which requires it.
       R"({"oneOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],
           "additionalProperties":true},{"type":"object","properties":{"a":{"type":"string"},
           "b":{"type":"integer"}},"required":["a","b"]}]})",
       "branches 0 and 1"},
      {"nested", R"({"type":"array","items":{"oneOf":[{"type":"boolean"},{"enum":[true]}]}})",
       "#/items: oneOf branches 0 and 1"},
  };
  for (const Bad& b : bad) {
    auto g = CompileSchema(b.schema);
    ASSERT_FALSE(g.ok()) << b.name;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument) << b.name;
    const std::string& msg = g.status().message();
    EXPECT_NE(msg.find("oneOf"), std::string::npos) << b.name << ": " << msg;
    EXPECT_NE(msg.find(b.branches), std::string::npos) << b.name << ": " << msg;
    EXPECT_NE(msg.find("use anyOf"), std::string::npos) << b.name << ": " << msg;
  }
}

TEST(OneOfTest, RecursiveBranchesAreRefusedQuickly) {
  // Two recursive branches with two required self-references each: without a bound the proof
  // would branch 2^depth times. It ends when the step budget is spent (refused: not proven).
  const auto t0 = std::chrono::steady_clock::now();
  auto g = CompileSchema(
      R"({"$defs":{"T":{"type":"object","properties":{"l":{"$ref":"#/$defs/T"},
          "r":{"$ref":"#/$defs/T"},"v":{"type":"integer"}},"required":["l","r"]},
          "U":{"type":"object","properties":{"l":{"$ref":"#/$defs/U"},"r":{"$ref":"#/$defs/U"},
          "w":{"type":"integer"}},"required":["l","r"]}},
          "oneOf":[{"$ref":"#/$defs/T"},{"$ref":"#/$defs/U"}]})");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("branches 0 and 1"), std::string::npos)
      << g.status().message();
  EXPECT_NE(g.status().message().find("use anyOf"), std::string::npos);
  EXPECT_NE(g.status().message().find("proof budget"), std::string::npos);
  EXPECT_LT(s, 30.0);  // a hang guard (sanitizer builds are slow); ~1 s here
}

TEST(OneOfTest, RecursiveDiscriminatedUnionCompiles) {
  // Expression trees (Pydantic style): recursive branches told apart without walking the
  // recursion (the discriminator "op", or the sizes of "args").
  auto g = CompileSchema(
      R"({"$defs":{"Num":{"type":"object","properties":{"op":{"const":"num"},
          "args":{"type":"array","maxItems":0},"value":{"type":"integer","minimum":0,
          "maximum":9}},"required":["args","op","value"],"additionalProperties":false},
          "Add":{"type":"object","properties":{"op":{"const":"add"},"args":{"type":"array",
          "items":{"$ref":"#/$defs/Expr"},"minItems":2,"maxItems":2}},
          "required":["args","op"],"additionalProperties":false},
          "Expr":{"oneOf":[{"$ref":"#/$defs/Num"},{"$ref":"#/$defs/Add"}]}},
          "$ref":"#/$defs/Expr"})");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(Complete(*g, R"({"op":"num","args":[],"value":3})"));  // properties in schema order
  EXPECT_TRUE(Complete(
      *g,
      R"({"op":"add","args":[{"op":"num","args":[],"value":1},{"op":"num","args":[],"value":2}]})"));
  EXPECT_FALSE(Complete(*g, R"({"op":"add","args":[]})"));
  EXPECT_FALSE(Complete(*g, R"({"op":"num","args":[]})"));
}

TEST(OneOfTest, AnyOfWithTheSameBranchesStillCompiles) {
  // The refusal is specific to oneOf: anyOf has no exactly-one requirement.
  auto g = CompileSchema(R"({"anyOf":[{"type":"integer"},{"type":"number"}]})");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_TRUE(Complete(*g, "1"));
  EXPECT_TRUE(Complete(*g, "1.5"));
}

TEST(OneOfTest, AnyOfAndOneOfTogetherAreRefused) {
  auto g = CompileSchema(
      R"({"anyOf":[{"type":"integer"},{"type":"string"}],"oneOf":[{"type":"integer"}]})");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("anyOf and oneOf"), std::string::npos);
}

TEST(OneOfTest, ProverIsConservativeOnValues) {
  int64_t budget = ExclusivityProver::kProofBudget;
  ExclusivityProver prover(
      [](SchemaJson* a, const SchemaJson& b) {
        for (auto& [k, v] : b.items()) (*a)[k] = v;
        return Status::Ok();
      },
      &budget);
  auto j = [](const char* s) { return SchemaJson::parse(s); };
  // Object key order and 1 vs 1.0 do not make values different.
  EXPECT_FALSE(prover.NoGeneratedValueIsValid(j(R"({"const":{"a":1,"b":2}})"),
                                              j(R"({"const":{"b":2,"a":1.0}})"), nullptr));
  EXPECT_TRUE(prover.NoGeneratedValueIsValid(j(R"({"const":{"a":1}})"), j(R"({"const":{"a":2}})"),
                                             nullptr));
  // 3.0 is an integer under JSON Schema.
  EXPECT_FALSE(
      prover.NoGeneratedValueIsValid(j(R"({"const":3.0})"), j(R"({"type":"integer"})"), nullptr));
  EXPECT_TRUE(
      prover.NoGeneratedValueIsValid(j(R"({"const":3.5})"), j(R"({"type":"integer"})"), nullptr));
  // An empty schema generates anything, objects with any key included.
  EXPECT_FALSE(
      prover.NoGeneratedValueIsValid(j("{}"), j(R"({"type":"object","required":["x"]})"), nullptr));
  // maxLength counts code points, not bytes.
  EXPECT_FALSE(prover.NoGeneratedValueIsValid(j("{\"const\":\"\xc3\xa9\xc3\xa9\"}"),
                                              j(R"({"type":"string","maxLength":2})"), nullptr));
  // A draft-07 validator ignores prefixItems: a value is not excluded by it on the valid side.
  EXPECT_FALSE(prover.NoGeneratedValueIsValid(
      j(R"({"const":[1]})"), j(R"({"type":"array","prefixItems":[{"type":"string"}]})"), nullptr));
  EXPECT_TRUE(prover.NoGeneratedValueIsValid(
      j(R"({"const":[1]})"), j(R"({"type":"array","items":{"type":"string"}})"), nullptr));
  // Regression: kiln generates {"b":1} for p's merged branch, although p's other keywords alone
  // ({"properties":{"a":…}}: no extra keys) would never generate it.
  const SchemaJson nested = j(R"({"type":"object","required":["p"],"properties":{"p":{
      "properties":{"a":{"type":"integer"}},
      "anyOf":[{"type":"object","properties":{"b":{"type":"integer"}}}]}}})");
  EXPECT_FALSE(prover.NoGeneratedValueIsValid(nested, j(R"({"const":{"p":{"b":1}}})"), nullptr));
  // The restriction is reported, never applied silently.
  std::set<std::string> exclude;
  EXPECT_TRUE(prover.NoGeneratedValueIsValid(j(R"({"type":"object","additionalProperties":true})"),
                                             j(R"({"type":"object","required":["k"]})"), &exclude));
  EXPECT_EQ(exclude, std::set<std::string>{"k"});
  EXPECT_FALSE(prover.NoGeneratedValueIsValid(j(R"({"type":"object","additionalProperties":true})"),
                                              j(R"({"type":"object","required":["k"]})"), nullptr));
}

}  // namespace
}  // namespace kiln::structured
