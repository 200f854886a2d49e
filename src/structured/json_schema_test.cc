// JSON Schema features: for each, strings the matcher must accept as complete outputs and strings
// it must reject (not a viable prefix, or not complete). Plus errors for unsupported keywords.
#include "structured/json_schema.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "structured/structured_output.h"
#include "structured/test_vocab.h"

namespace kiln::structured {
namespace {

GrammarCompiler& Compiler() { return testing::TinyJsonCompiler(); }

struct Case {
  const char* name;
  const char* schema;
  std::vector<std::string> accept;
  std::vector<std::string> reject;
};

bool Complete(const std::shared_ptr<const CompiledGrammar>& g, const std::string& s) {
  return testing::CompleteOutput(g, s);
}

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {"string",
       R"({"type":"string"})",
       {R"("")", R"("hello")", R"("a\"b\\c\n\u00e9")", "\"\xc3\xa9t\xc3\xa9\""},
       {R"(hello)", R"("abc)", "\"a\nb\"", R"("\x")", R"("\ud800")", "\"\xff\""}},
      {"integer", R"({"type":"integer"})", {"0", "-7", "123456"}, {"01", "-0", "1.5", "+1", "1e3"}},
      {"number",
       R"({"type":"number"})",
       {"0", "-1.25", "3e10", "2.5E-3", "7"},
       {"1.", ".5", "--1", "1e"}},
      {"boolean_null",
       R"({"type":["boolean","null"]})",
       {"true", "false", "null"},
       {"1", "\"true\""}},
      {"integer_range",
       R"({"type":"integer","minimum":-12,"maximum":305})",
       {"-12", "-1", "0", "9", "10", "99", "100", "299", "305"},
       {"-13", "306", "310", "1000", "-20"}},
      {"integer_exclusive",
       R"({"type":"integer","exclusiveMinimum":5,"exclusiveMaximum":10})",
       {"6", "9"},
       {"5", "10", "4", "11"}},
      {"integer_open_above",
       R"({"type":"integer","minimum":17})",
       {"17", "18", "99", "100", "123456789"},
       {"16", "9", "0", "-17"}},
      {"number_range",
       R"({"type":"number","minimum":0,"maximum":1})",
       {"0", "1", "0.5", "0.999", "0.001"},
       {"1.5", "-0.5", "2", "1.0001"}},
      {"number_exclusive",
       R"({"type":"number","exclusiveMinimum":0,"maximum":10})",
       {"0.5", "10", "9.75", "1"},
       {"0", "10.5", "-1"}},
      {"number_negative",
       R"({"type":"number","minimum":-2.5,"maximum":-1})",
       {"-1", "-2", "-1.5", "-2.5", "-2.25", "-2.50", "-1.0"},
       {"0", "-3", "-0.5", "1", "-2.51", "-2.5000001", "-0.99"}},
      // Fractional bounds are exact (they used to keep only whole unit intervals: [0.1, 0.25] was
      // an empty language and [0.5, 1] took only "1").
      {"number_fractional_bounds",
       R"({"type":"number","minimum":0.1,"maximum":0.25})",
       {"0.1", "0.10", "0.2", "0.25", "0.125", "0.2499999"},
       {"0", "0.09", "0.0999", "0.26", "0.251", "1", "0.3", "-0.1"}},
      {"number_confidence",
       R"({"type":"number","minimum":0.5,"maximum":1})",
       {"0.5", "0.75", "0.999", "1", "1.0", "1.00"},
       {"0.49", "0.4999", "1.01", "1.5", "0", "2"}},
      {"number_fractional_exclusive",
       R"({"type":"number","exclusiveMinimum":0.5,"exclusiveMaximum":2.75})",
       {"0.51", "0.5000001", "1", "2", "2.7", "2.749", "1.5"},
       {"0.5", "0.50", "2.75", "2.750", "0.4", "3", "2.8"}},
      {"number_across_zero",
       R"({"type":"number","minimum":-0.5,"exclusiveMaximum":0.25})",
       {"-0.5", "-0.25", "0", "0.2", "0.249", "-0.0"},
       {"-0.51", "-1", "0.25", "0.3", "1"}},
      {"number_exclusive_zero",
       R"({"type":"number","exclusiveMinimum":-1.5,"exclusiveMaximum":0})",
       {"-1", "-0.5", "-1.4999", "-0.001"},
       {"0", "-0.0", "-0.000", "-1.5", "-2", "0.5"}},
      // Exclusive bounds hold for the double a reader makes of the text: 1000.4000000000000005 is
      // past 1000.4 as a decimal but reads back as 1000.4.
      {"number_exclusive_reads_back_past_the_bound",
       R"({"type":"number","exclusiveMinimum":1000.4,"exclusiveMaximum":1000.5})",
       {"1000.41", "1000.4000000000001", "1000.4999999999999", "1000.45"},
       {"1000.4", "1000.4000000000000005", "1000.4000000000000001", "1000.5",
        "1000.4999999999999999"}},
      // A near bound just below 10^15: no integer of at most 15 digits lies past it (every integer
      // used to pass).
      {"number_near_the_digit_limit",
       R"({"type":"number","minimum":999999999999999.5})",
       {"999999999999999.5", "999999999999999.75"},
       {"500500000000000", "0", "999999999999999", "-1"}},
      {"number_cents_fractional_bounds",
       R"({"type":"number","minimum":0.05,"maximum":9.99,"multipleOf":0.01})",
       {"0.05", "0.5", "1", "9.99", "4.2"},
       {"0.04", "0.049", "10", "9.991", "0.055"}},
      {"enum",
       R"({"enum":["red","green",3,null]})",
       {R"("red")", R"("green")", "3", "null"},
       {R"("blue")", "4", R"("re")"}},
      {"const", R"({"const":{"a":[1,"x"]}})", {R"({"a":[1,"x"]})"}, {R"({"a":[1]})"}},
      {"object_required_optional",
       R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},
           "c":{"type":"boolean"}},"required":["b"]})",
       {R"({"b":"x"})", R"({"a":1,"b":"x"})", R"({"b":"x","c":true})",
        R"({"a": 1, "b": "x", "c": false})", "{\n  \"a\": 1,\n  \"b\": \"\"\n}"},
       {R"({})", R"({"a":1})", R"({"b":"x","d":1})", R"({"b":1})", R"({"c":true,"b":"x"})",
        R"({"b":"x",})", "{  \"b\":\"x\"}"}},
      {"object_all_optional",
       R"({"type":"object","properties":{"a":{"type":"integer"}}})",
       {"{}", R"({"a":5})", "{ }"},
       {R"({"b":5})"}},
      {"additional_true",
       R"({"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":true})",
       {R"({"a":1,"zz":[1,{"q":null}]})", R"({"x":"y"})", R"({"ab":1})", R"({"":1})"},
       {R"({"a":1,"a":2})", R"({"x":1,"a":2})"}},
      {"additional_schema",
       R"({"type":"object","additionalProperties":{"type":"integer"}})",
       {R"({"k":1,"j":2})", "{}"},
       {R"({"k":"v"})"}},
      {"additional_false",
       R"({"type":"object","properties":{"a":{"type":"null"}},
           "additionalProperties":false,"required":["a"]})",
       {R"({"a":null})"},
       {R"({"a":null,"b":1})"}},
      {"array_items",
       R"({"type":"array","items":{"type":"integer"}})",
       {"[]", "[1]", "[1, 2,3]", "[\n  1\n]"},
       {"[1,]", "[\"a\"]", "[,1]"}},
      {"array_min_max",
       R"({"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":3})",
       {"[true,false]", "[true,true,true]"},
       {"[]", "[true]", "[true,true,true,true]"}},
      {"prefix_items",
       R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],
           "items":false})",
       {R"(["a",1])", R"(["a"])", "[]"},
       {R"([1,"a"])", R"(["a",1,2])"}},
      {"prefix_then_items",
       R"({"type":"array","prefixItems":[{"const":"h"}],
           "items":{"type":"integer"},"minItems":2})",
       {R"(["h",1])", R"(["h",1,2,3])"},
       {R"(["h"])", R"([1,2])"}},
      {"anyof",
       R"({"anyOf":[{"type":"integer"},{"type":"object","properties":{"k":{"const":1}},
           "required":["k"]}]})",
       {"5", R"({"k":1})"},
       {R"({"k":2})", R"("s")"}},
      {"oneof",
       R"({"oneOf":[{"type":"string","maxLength":2},{"type":"null"}]})",
       {R"("ab")", "null"},
       {R"("abc")", "1"}},
      {"allof_objects",
       R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},
           "required":["a"]},{"properties":{"b":{"type":"string"}},"required":["b"]}]})",
       {R"({"a":1,"b":"x"})"},
       {R"({"a":1})", R"({"b":"x"})"}},
      {"ref_defs",
       R"({"$defs":{"pt":{"type":"object","properties":{"x":{"type":"integer"},
           "y":{"type":"integer"}},"required":["x","y"]}},"type":"object","properties":{
           "from":{"$ref":"#/$defs/pt"},"to":{"$ref":"#/$defs/pt"}},"required":["from","to"]})",
       {R"({"from":{"x":1,"y":2},"to":{"x":3,"y":4}})"},
       {R"({"from":{"x":1},"to":{"x":3,"y":4}})"}},
      {"recursion",
       R"({"type":"object","properties":{"name":{"type":"string"},"children":{
           "type":"array","items":{"$ref":"#"}}},"required":["name"]})",
       {R"({"name":"a"})", R"({"name":"a","children":[{"name":"b","children":[{"name":"c"}]}]})"},
       {R"({"name":"a","children":[{}]})"}},
      {"string_length",
       R"({"type":"string","minLength":2,"maxLength":4})",
       {R"("ab")", R"("abcd")", R"("\n\t")", "\"\xc3\xa9\xc3\xa9\""},
       {R"("a")", R"("abcde")"}},
      {"pattern_anchored",
       R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"})",
       {R"("AB-123")"},
       {R"("AB-12")", R"("xAB-123")", R"("ab-123")"}},
      {"pattern_unanchored",
       R"({"type":"string","pattern":"\\d{3}"})",
       {R"("abc123def")", R"("123")"},
       {R"("12")"}},
      {"format_date",
       R"({"type":"string","format":"date"})",
       {R"("2024-02-28")", R"("1999-12-31")"},
       {R"("2024-13-01")", R"("2024-02-30")", R"("24-01-01")"}},
      {"format_time",
       R"({"type":"string","format":"time"})",
       {R"("23:59:59Z")", R"("08:30:00.123+02:00")"},
       {R"("24:00:00Z")", R"("12:00:00")"}},
      {"format_date_time",
       R"({"type":"string","format":"date-time"})",
       {R"("2024-01-15T10:20:30Z")"},
       {R"("2024-01-15 10:20:30Z")"}},
      {"format_email",
       R"({"type":"string","format":"email"})",
       {R"("john.doe@example.com")"},
       {R"("john@")", R"("@x.com")"}},
      {"format_uuid",
       R"({"type":"string","format":"uuid"})",
       {R"("123e4567-e89b-12d3-a456-426614174000")"},
       {R"("123e4567e89b12d3a456426614174000")"}},
      {"format_ipv4",
       R"({"type":"string","format":"ipv4"})",
       {R"("192.168.0.1")", R"("255.255.255.255")"},
       {R"("256.1.1.1")", R"("1.2.3")"}},
      {"annotations_ignored",
       R"({"title":"T","description":"d","default":1,"examples":[1],
           "$schema":"https://json-schema.org/draft/2020-12/schema","type":"integer"})",
       {"1"},
       {"\"x\""}},
      {"enum_filtered_by_type",
       R"({"type":"string","enum":["a",1,null,"b"]})",
       {R"("a")", R"("b")"},
       {"1", "null"}},
      {"required_not_in_properties",
       R"({"type":"object","properties":{"a":{"type":"integer"}},
           "required":["a","z"]})",
       {R"({"a":1,"z":[true]})"},
       {R"({"a":1})"}},
      {"nullable", R"({"type":"string","nullable":true})", {"null", R"("x")"}, {"1"}},
      {"empty_schema_any", R"({})", {"1", R"({"a":[true,null]})", R"("s")"}, {"tru"}},
      // Length bounds are counted (no state per count): an escape or a code point is one char.
      {"string_length_counted",
       R"({"type":"string","minLength":2,"maxLength":4})",
       {R"("ab")", R"("abcd")", R"("\u00e9\n")", "\"\xc3\xa9t\xc3\xa9\"", R"("a\"\\b")"},
       {R"("a")", R"("abcde")", R"("\n\n\n\n\n")", R"("")", "\"\xc3\xa9\""}},
      {"string_length_large",
       R"({"type":"string","maxLength":20000})",
       {R"("")", R"("some text")"},
       {"\"" + std::string(20001, 'x') + "\""}},
      {"pattern_with_length",
       R"({"type":"string","pattern":"^[a-z]+$","minLength":3,"maxLength":5})",
       {R"("abc")", R"("abcde")"},
       {R"("ab")", R"("abcdef")", R"("ab1")"}},
      {"pattern_with_length_gap",
       R"({"type":"string","pattern":"^(ab|abcdefgh)$","minLength":5})",
       {R"("abcdefgh")"},
       {R"("ab")", R"("abcdefg")"}},
      {"unanchored_pattern_with_length",
       R"({"type":"string","pattern":"\\d{2}","maxLength":4})",
       {R"("12")", R"("a12b")", R"("x99")"},
       {R"("ab")", R"("ab12c")"}},
      {"format_uri",
       R"({"type":"string","format":"uri"})",
       {R"("https://example.com")", R"("http://api.example.co.uk:8080/v1/items?id=7&x=")"},
       {R"("example.com")", R"("ftp://x.org")", R"("https://")"}},
      {"format_hostname",
       R"({"type":"string","format":"hostname"})",
       {R"("db-1.internal.example.com")", R"("localhost")"},
       {R"("-bad.example.com")", R"("a..b")"}},
      {"format_with_length",
       R"({"type":"string","format":"email","maxLength":8})",
       {R"("a@b.co")"},
       {R"("abcdefg@h.io")", R"("abc")"}},
      {"multiple_of_cents",
       R"({"type":"number","minimum":0,"multipleOf":0.01})",
       {"0", "12.5", "3.07", "100"},
       {"1.234", "-1", "1e2"}},
      {"multiple_of_range",
       R"({"type":"integer","minimum":0,"maximum":60,"multipleOf":15})",
       {"0", "15", "45", "60"},
       {"10", "75", "-15"}},
      {"multiple_of_thousand",
       R"({"type":"integer","minimum":0,"multipleOf":1000})",
       {"0", "1000", "25000", "999999999999000"},
       {"500", "1001", "-1000", "10000000000000000000"}},
      {"multiple_of_quarter",
       R"({"type":"number","minimum":0.3,"maximum":2.6,"multipleOf":0.25})",
       {"0.5", "1", "1.75", "2.5"},
       {"0.25", "2.75", "0.3", "1.2", "3"}},
      {"multiple_of_half",
       R"({"type":"number","exclusiveMinimum":-1,"maximum":1,"multipleOf":0.5})",
       {"-0.5", "0", "0.5", "1"},
       {"-1", "0.25", "1.5"}},
      {"multiple_of_one",
       R"({"type":"number","multipleOf":1})",
       {"0", "-7", "123"},
       {"1.5", "1e3"}},
      {"min_max_properties",
       R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},
           "c":{"type":"integer"}},"minProperties":1,"maxProperties":2})",
       {R"({"a":1})", R"({"b":1,"c":2})", R"({"a":1,"c":2})"},
       {"{}", R"({"a":1,"b":2,"c":3})"}},
      {"min_properties_extras",
       R"({"type":"object","additionalProperties":{"type":"integer"},"minProperties":2})",
       {R"({"x":1,"y":2})", R"({"x":1,"y":2,"z":3})"},
       {R"({"x":1})", "{}"}},
      {"max_properties_required_and_extras",
       R"({"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],
           "additionalProperties":{"type":"boolean"},"maxProperties":2})",
       {R"({"id":1})", R"({"id":1,"x":true})"},
       {R"({"id":1,"x":true,"y":false})", R"({"x":true})"}},
      {"unevaluated_plain",
       R"({"type":"object","properties":{"a":{"type":"integer"}},"unevaluatedProperties":false})",
       {R"({"a":1})", "{}"},
       {R"({"b":1})"}},
      {"unevaluated_schema",
       R"({"type":"object","properties":{"a":{"type":"integer"}},
           "unevaluatedProperties":{"type":"string"}})",
       {R"({"a":1,"b":"x"})"},
       {R"({"b":1})"}},
      {"unevaluated_allof",
       R"({"allOf":[{"type":"object","properties":{"a":{"type":"integer"}}}],
           "properties":{"b":{"type":"string"}},"unevaluatedProperties":false})",
       {R"({"a":1,"b":"x"})", R"({"a":1})"},
       {R"({"c":1})", R"({"a":1,"c":1})"}},
      {"unevaluated_anyof",
       R"({"type":"object","properties":{"kind":{"type":"string"}},"required":["kind"],
           "anyOf":[{"properties":{"a":{"type":"integer"}},"required":["a"]},
                    {"properties":{"b":{"type":"boolean"}},"required":["b"]}],
           "unevaluatedProperties":false})",
       {R"({"kind":"x","a":1})", R"({"kind":"y","b":true})"},
       {R"({"kind":"x","a":1,"z":0})", R"({"kind":"x"})"}},
  };
  return cases;
}

TEST(JsonSchemaTest, AcceptAndRejectPerFeature) {
  for (const Case& c : Cases()) {
    ResponseFormat f;
    f.type = ResponseFormat::Type::kJsonSchema;
    f.json_schema = c.schema;
    auto g = Compiler().Compile(f);
    ASSERT_TRUE(g.ok()) << c.name << ": " << g.status().ToString();
    for (const auto& s : c.accept) EXPECT_TRUE(Complete(*g, s)) << c.name << " should accept " << s;
    for (const auto& s : c.reject)
      EXPECT_FALSE(Complete(*g, s)) << c.name << " should reject " << s;
  }
}

TEST(JsonSchemaTest, JsonObjectIsAnyObject) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonObject;
  auto g = Compiler().Compile(f);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(Complete(*g, R"({"a": [1, 2.5, {"b": null}], "c": "d"})"));
  EXPECT_TRUE(Complete(*g, "{}"));
  EXPECT_FALSE(Complete(*g, "[1]"));
  EXPECT_FALSE(Complete(*g, "\"x\""));
}

TEST(JsonSchemaTest, WhitespaceIsBounded) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonObject;
  auto g = Compiler().Compile(f);
  ASSERT_TRUE(g.ok());
  GrammarMatcher m(*g);
  // "{" ws [members] ws "}": at most two whitespace runs fit before the closing brace.
  EXPECT_TRUE(m.AcceptBytes("{ \n        "));
  EXPECT_FALSE(m.WouldAccept(" "));
  EXPECT_FALSE(m.WouldAccept("\n"));
  EXPECT_TRUE(m.WouldAccept("}"));
  GrammarMatcher m2(*g);
  EXPECT_FALSE(m2.WouldAccept("{  \n"));  // a third run
  EXPECT_TRUE(m2.WouldAccept("{\n        }"));
  EXPECT_FALSE(m2.WouldAccept("{\n         \n"));  // newline + 9 spaces then a newline
}

TEST(JsonSchemaTest, UnsupportedKeywordsNameTheKeyword) {
  struct Bad {
    const char* schema;
    const char* needle;
  };
  for (const Bad& b :
       {Bad{R"({"type":"object","patternProperties":{"a":{}}})", "'patternProperties'"},
        Bad{R"({"type":"number","multipleOf":3})", "multipleOf 3 needs both a minimum"},
        Bad{R"({"type":"integer","minimum":0,"maximum":1e9,"multipleOf":7})", "more than 4096"},
        Bad{R"({"type":"object","propertyNames":{"maxLength":3}})", "'propertyNames'"},
        // Regression: a minimum of 2e15 was treated as open and let "5" through.
        Bad{R"({"type":"integer","minimum":2e15})", "1e15"},
        Bad{R"({"type":"number","exclusiveMaximum":-1e16})", "1e15"},
        // Values exist but need more than 16 fraction digits: a clear refusal, not "empty".
        Bad{R"({"type":"number","minimum":1e-20,"maximum":1e-19})", "16 fraction digits"},
        Bad{R"({"type":"number","exclusiveMinimum":0,"maximum":1e-20})", "16 fraction digits"},
        // No integer of at most 15 digits is >= 999999999999999.5.
        Bad{R"({"type":"integer","minimum":999999999999999.5})", "empty language"},
        Bad{R"({"not":{"type":"string"}})", "'not'"},
        Bad{R"({"type":"array","uniqueItems":true})", "'uniqueItems'"},
        Bad{R"({"if":{},"then":{}})", "'if'"},
        Bad{R"({"type":"string","format":"ipv6"})", "'ipv6'"},
        Bad{R"({"$ref":"http://x/y"})", "not a local reference"},
        Bad{R"({"$ref":"#/$defs/missing"})", "does not resolve"},
        // Regression: a 20+-digit array index threw out of std::stoul and killed the server.
        Bad{R"({"anyOf":[{"type":"integer"}],"$ref":"#/anyOf/99999999999999999999"})",
            "does not resolve"},
        Bad{R"({"anyOf":[{"type":"integer"}],"$ref":"#/anyOf/1"})", "does not resolve"},
        Bad{R"({"type":"object","properties":{"a":{"contains":{}}}})", "/properties/a"},
        Bad{"{not json", "not valid JSON"}}) {
    ResponseFormat f;
    f.type = ResponseFormat::Type::kJsonSchema;
    f.json_schema = b.schema;
    auto g = Compiler().Compile(f);
    ASSERT_FALSE(g.ok()) << b.schema;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(b.needle), std::string::npos) << g.status().message();
  }
}

TEST(JsonSchemaTest, UnsatisfiableSchemaIsAnError) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = R"({"type":"array","minItems":3,"maxItems":2})";
  EXPECT_FALSE(Compiler().Compile(f).ok());
  f.json_schema = R"({"type":"integer","minimum":5,"maximum":4})";
  EXPECT_FALSE(Compiler().Compile(f).ok());
}

TEST(JsonSchemaTest, CompiledGrammarsAreCachedByFormat) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = R"({"type":"object","properties":{"cache_me":{"type":"string"}}})";
  auto a = Compiler().Compile(f);
  auto b = Compiler().Compile(f);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->get(), b->get());
}

TEST(JsonSchemaTest, ConcurrentCompilesAgree) {
  // GrammarCompiler is thread-safe: concurrent compiles of the same and different schemas.
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<const CompiledGrammar>> out(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([i, &out] {
      ResponseFormat f;
      f.type = ResponseFormat::Type::kJsonSchema;
      f.json_schema = std::string(R"({"type":"object","properties":{"k)") + std::to_string(i % 2) +
                      R"(":{"type":"string","maxLength":3}},"required":["k)" +
                      std::to_string(i % 2) + R"("]})";
      auto g = Compiler().Compile(f);
      if (g.ok()) out[i] = *g;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    ASSERT_NE(out[i], nullptr);
    std::string key = "k" + std::to_string(i % 2);
    EXPECT_TRUE(Complete(out[i], "{\"" + key + "\":\"abc\"}"));
    EXPECT_FALSE(Complete(out[i], "{\"" + key + "\":\"abcd\"}"));
  }
}

// A pattern whose only completions break the length bound: the counted rule keeps only counts from
// which the string can still end in bounds, so no prefix leads to a dead end.
TEST(JsonSchemaTest, PatternWithLengthHasNoDeadEnds) {
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = R"({"type":"string","pattern":"^a(b|cdef)$","maxLength":3})";
  auto g = Compiler().Compile(f);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  GrammarMatcher m(*g);
  EXPECT_TRUE(m.WouldAccept("\"ab\""));
  EXPECT_FALSE(m.WouldAccept("\"ac"));  // "acdef" is 5 characters
  f.json_schema = R"({"type":"string","pattern":"^[a-z]{3}$","minLength":5})";
  auto empty = Compiler().Compile(f);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty language"), std::string::npos)
      << empty.status().message();
}

// Regression (issue #18, stalls): nested repetition counts compiled for seconds; the automaton
// build has a CPU-time budget and answers InvalidArgument when it is spent.
TEST(JsonSchemaTest, HugeRepetitionCountsFailFastWithAClearError) {
  for (const char* re : {"(a{60}){61}", "(a{100}){100}", "((a{30}){30}){30}"}) {
    ResponseFormat f;
    f.type = ResponseFormat::Type::kRegex;
    f.regex = re;
    const auto t0 = std::chrono::steady_clock::now();
    auto g = Compiler().Compile(f);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(g.ok()) << re;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
    const std::string& msg = g.status().message();
    EXPECT_TRUE(msg.find("too complex") != std::string::npos ||
                msg.find("too large") != std::string::npos)
        << msg;
    EXPECT_LT(s, 10.0) << re << " took " << s << " s";  // budget: 0.5 s of CPU time
  }
}

// Two requests with the same new schema compile it once (the second waits for the first).
TEST(JsonSchemaTest, ConcurrentCompilesOfOneNewSchemaCompileOnce) {
  auto compiler = GrammarCompiler::Create(Compiler().shared_vocab()).value();
  ResponseFormat f;
  f.type = ResponseFormat::Type::kJsonSchema;
  f.json_schema = R"({"type":"object","properties":{"a":{"type":"string","maxLength":300},
      "b":{"type":"array","items":{"type":"integer","minimum":-5000,"maximum":99999},
      "maxItems":40},"c":{"anyOf":[{"type":"string","format":"date-time"},{"type":"null"}]}},
      "required":["a","b","c"]})";
  std::atomic<int> ready{0};
  std::vector<std::shared_ptr<const CompiledGrammar>> out(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < 4) std::this_thread::yield();
      auto g = compiler->Compile(f);
      if (g.ok()) out[i] = *g;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(compiler->num_compilations(), 1);
  for (int i = 0; i < 4; ++i) {
    ASSERT_NE(out[i], nullptr);
    EXPECT_EQ(out[i].get(), out[0].get());
  }
}

}  // namespace
}  // namespace kiln::structured
