// Regression tests: enum / const values checked against every sibling keyword (schema_value.h),
// and exact allOf merging (schema_merge.h: each member's additionalProperties judges the keys
// outside that member's own properties; array items position by position). Each case lists
// outputs the compiled grammar must accept and outputs it must never produce; each refusal names
// the problem.
#include "structured/schema_value.h"

#include <gtest/gtest.h>

#include "structured/structured_output.h"
#include "structured/test_vocab.h"

namespace kiln::structured {
namespace {

struct Case {
  const char* name;
  const char* schema;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const std::string& schema) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = schema;
  return testing::TinyJsonCompiler().Compile(f);
}

void ExpectCases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    auto g = Compile(c.schema);
    ASSERT_TRUE(g.ok()) << c.name << ": " << g.status().ToString();
    for (const auto& s : c.accept) {
      EXPECT_TRUE(testing::CompleteOutput(*g, s)) << c.name << " should accept " << s;
    }
    for (const auto& s : c.reject) {
      EXPECT_FALSE(testing::CompleteOutput(*g, s)) << c.name << " must not emit " << s;
    }
  }
}

void ExpectRefused(const char* schema, const char* needle) {
  auto g = Compile(schema);
  ASSERT_FALSE(g.ok()) << schema;
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(g.status().message().find(needle), std::string::npos)
      << schema << " → " << g.status().message();
}

// Bug: enum/const values were filtered only by "type"; {"enum":["abc"],"maxLength":2} emitted
// "abc".
TEST(SchemaValueTest, EnumValuesAreCheckedAgainstEverySiblingKeyword) {
  ExpectCases({
      {"max_length", R"({"enum":["abc","ab"],"maxLength":2})", {R"("ab")"}, {R"("abc")"}},
      {"length_in_code_points",
       R"({"enum":["é","ab"],"maxLength":1})",
       {"\"\xc3\xa9\""},
       {R"("ab")"}},
      {"min_length", R"({"enum":["","a"],"minLength":1})", {R"("a")"}, {R"("")"}},
      {"pattern", R"({"enum":["a1","bb"],"pattern":"^[a-z]+$"})", {R"("bb")"}, {R"("a1")"}},
      {"pattern_unanchored", R"({"enum":["xay","b"],"pattern":"a"})", {R"("xay")"}, {R"("b")"}},
      {"format", R"({"enum":["2024-01-15","x"],"format":"date"})", {R"("2024-01-15")"}, {R"("x")"}},
      {"number_bounds",
       R"({"enum":[1,5,10,2.5],"minimum":2,"exclusiveMaximum":10})",
       {"5", "2.5"},
       {"1", "10"}},
      {"draft4_exclusive", R"({"enum":[2,3],"minimum":2,"exclusiveMinimum":true})", {"3"}, {"2"}},
      {"integer_type", R"({"type":"integer","enum":[1,1.5]})", {"1"}, {"1.5"}},
      {"max_items", R"({"enum":[[1],[1,2,3]],"maxItems":2})", {"[1]"}, {"[1,2,3]"}},
      {"items",
       R"({"enum":[[1,"a"],[1,2]],"items":{"type":"integer"}})",
       {"[1,2]"},
       {R"([1,"a"])"}},
      {"prefix_items",
       R"({"enum":[["a",1],[1,"a"]],"prefixItems":[{"type":"string"}]})",
       {R"(["a",1])"},
       {R"([1,"a"])"}},
      {"object_keywords",
       R"({"enum":[{"a":1},{"a":1,"b":2},{"b":2},{"a":"x"}],"properties":{"a":{"type":"integer"}},
           "required":["a"],"additionalProperties":false})",
       {R"({"a":1})"},
       {R"({"a":1,"b":2})", R"({"b":2})", R"({"a":"x"})"}},
      {"nested_enum",
       R"({"enum":[{"a":"x"},{"a":"y"}],"properties":{"a":{"enum":["y"]}}})",
       {R"({"a":"y"})"},
       {R"({"a":"x"})"}},
      {"nested_ref",
       R"({"$defs":{"short":{"maxLength":1}},"enum":[["ab"],["a"]],"items":{"$ref":"#/$defs/short"}})",
       {R"(["a"])"},
       {R"(["ab"])"}},
      {"const_with_enum", R"({"const":"b","enum":["a","b"]})", {R"("b")"}, {R"("a")"}},
      {"nullable",
       R"({"type":"string","nullable":true,"enum":["a",null,1]})",
       {R"("a")", "null"},
       {"1"}},
      // Sibling: an enum in an anyOf branch takes the anyOf's sibling keywords.
      {"enum_in_anyof_branch",
       R"({"maxLength":2,"anyOf":[{"enum":["abc","ab"]},{"type":"integer","maximum":9}]})",
       {R"("ab")", "5"},
       {R"("abc")"}},
      {"const_in_oneof_branch",
       R"({"minimum":0,"oneOf":[{"const":-1},{"const":"s"},{"type":"null"}]})",
       {R"("s")", "null"},
       {"-1"}},
      // An optional property with no valid value is absent, and never comes back as an extra key.
      {"optional_property_without_value",
       R"({"type":"object","properties":{"a":{"enum":["abc"],"maxLength":2}},
           "additionalProperties":true})",
       {"{}", R"({"b":1})"},
       {R"({"a":"abc"})", R"({"a":1})"}},
      {"false_property_is_not_an_extra_key",
       R"({"type":"object","properties":{"a":false},"additionalProperties":true})",
       {R"({"b":1})"},
       {R"({"a":1})"}},
  });
}

TEST(SchemaValueTest, NoValueLeftIsAnErrorNamingTheKeyword) {
  ExpectRefused(R"({"enum":["abc"],"maxLength":2})", "maxLength 2");
  ExpectRefused(R"({"const":"abc","maxLength":2})", "no const value");
  ExpectRefused(R"({"const":"a","enum":["b"]})", "not in enum");
  ExpectRefused(R"({"type":"object","properties":{"k":{"enum":[3],"minimum":5}},"required":["k"]})",
                "#/properties/k");
  ExpectRefused(R"({"type":"array","minItems":1,"items":{"const":"x","pattern":"^y"}})", "pattern");
  // A keyword that cannot be judged on a concrete value is refused, not guessed.
  ExpectRefused(R"({"enum":["a"],"pattern":"(?=a)a"})", "pattern");
  ExpectRefused(R"({"enum":[{"a":1}],"properties":{"a":{"contains":{}}}})", "'contains'");
  // multipleOf, minProperties / maxProperties judge enum values too.
  ExpectRefused(R"({"enum":[3,5.5],"multipleOf":2})", "not a multiple of 2");
  ExpectRefused(R"({"enum":[{},{"a":1,"b":2}],"minProperties":1,"maxProperties":1})",
                "minProperties/maxProperties");
  ExpectRefused(R"({"enum":["a"],"format":"ipv6"})", "'ipv6'");
  ExpectRefused(R"({"enum":["a"],"maxLength":-1})", "maxLength");
}

// Bug: allOf merged additionalProperties: false over every member's properties, so a key another
// member lists (or a sibling anyOf branch adds) was emitted although the closed member forbids it.
TEST(SchemaMergeTest, EachMembersAdditionalPropertiesJudgesItsOwnKeys) {
  ExpectCases({
      {"closed_member",
       R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},
           "additionalProperties":false},{"properties":{"b":{"type":"string"}}}]})",
       {"{}", R"({"a":1})"},
       {R"({"a":1,"b":"x"})", R"({"b":"x"})"}},
      {"closed_member_second",
       R"({"allOf":[{"properties":{"b":{"type":"string"}}},{"type":"object",
           "properties":{"a":{"type":"integer"}},"additionalProperties":false}]})",
       {R"({"a":1})"},
       {R"({"b":"x"})"}},
      {"member_additional_schema",
       R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},
           "additionalProperties":{"type":"string"}},{"properties":{"b":{"maxLength":3}}}]})",
       {R"({"b":"abc"})", R"({"a":1,"z":"q"})"},
       {R"({"b":"abcd"})", R"({"b":5})", R"({"z":1})"}},
      {"closed_siblings_of_anyof",
       R"({"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false,
           "anyOf":[{"properties":{"b":{"type":"string"}}},{"required":["a"]}]})",
       {"{}", R"({"a":1})"},
       {R"({"b":"x"})"}},
      {"closed_ref_with_siblings",
       R"({"$defs":{"p":{"type":"object","properties":{"a":{"type":"integer"}},
           "additionalProperties":false}},"$ref":"#/$defs/p","properties":{"b":{"type":"null"}}})",
       {R"({"a":1})"},
       {R"({"b":null})"}},
      // Sibling: array items merged position by position.
      {"prefix_and_items",
       R"({"allOf":[{"type":"array","prefixItems":[{"type":"string"}]},
           {"items":{"type":"string","maxLength":1}}]})",
       {R"(["a"])", R"(["a","b"])"},
       {R"(["abc"])", R"(["a","bc"])"}},
      {"draft7_tuple_and_items",
       R"({"allOf":[{"type":"array","items":[{"type":"integer"}],"additionalItems":false},
           {"items":{"type":"integer","minimum":5}}]})",
       {"[5]", "[]"},
       {"[1]", "[5,6]"}},
      {"enum_intersection",
       R"({"allOf":[{"enum":["a","b"]},{"enum":["b","c"]}]})",
       {R"("b")"},
       {R"("a")", R"("c")"}},
      // A branch whose type is disjoint from its siblings' is simply unsatisfiable (it was an
      // error: "the types do not intersect").
      {"disjoint_branch_type",
       R"({"type":"string","anyOf":[{"maxLength":1},{"type":"integer"}]})",
       {R"("a")"},
       {"1", R"("ab")"}},
  });
  ExpectRefused(R"({"allOf":[{"type":"string"},{"type":"integer"}]})", "do not intersect");
}

// Sibling: OpenAPI "nullable" was kept by a merge although the other side forbids null, so
// {"type":"string","nullable":true,"anyOf":[{"type":"string"}]} emitted null.
TEST(SchemaMergeTest, NullableOnlyWhereBothSidesAllowNull) {
  ExpectCases({
      {"nullable_sibling_of_anyof",
       R"({"type":"string","nullable":true,"anyOf":[{"type":"string","maxLength":3}]})",
       {R"("abc")"},
       {"null", R"("abcd")"}},
      {"nullable_allof",
       R"({"allOf":[{"type":"string","nullable":true},{"type":["string","null"]}]})",
       {"null", R"("a")"},
       {"1"}},
      {"nullable_vs_no_type",
       R"({"allOf":[{"type":"integer","nullable":true},{"maximum":3}]})",
       {"null", "3"},
       {"4"}},
      {"number_and_integer",
       R"({"allOf":[{"type":["number","integer"]},{"type":"integer"}]})",
       {"3"},
       {"1.5"}},
  });
  // A key one member requires and another member's additionalProperties: false forbids.
  ExpectRefused(R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},
      "additionalProperties":false},{"properties":{"b":{"type":"string"}},"required":["b"]}]})",
                "required property 'b' can have no value");
  ExpectRefused(R"({"allOf":[{"minimum":1,"exclusiveMinimum":true},{"exclusiveMinimum":3}]})",
                "exclusiveMinimum");
  ExpectRefused(R"({"allOf":[{"const":1},{"const":2}]})", "no JSON value");
}

TEST(SchemaValueTest, ExprMatchesAllIsAWholeMatch) {
  auto e = FormatExpr("ipv4");
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(ExprMatchesAll(*e, "10.0.0.255"));
  EXPECT_FALSE(ExprMatchesAll(*e, "10.0.0.256"));
  EXPECT_FALSE(ExprMatchesAll(*e, "10.0.0.25x"));
  EXPECT_FALSE(ExprMatchesAll(*e, "10.0.0"));
}

}  // namespace
}  // namespace kiln::structured
