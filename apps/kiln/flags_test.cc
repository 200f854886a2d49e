#include "flags.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

Status ParseArgs(Flags* f, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return f->Parse(static_cast<int>(argv.size()), argv.data(), 0);
}

TEST(FlagsTest, ValuesBoolsAndNegation) {
  Flags f;
  f.Value("max-tokens", "");
  f.Bool("json", "");
  f.Bool("enable-prefix-caching", "");
  ASSERT_TRUE(ParseArgs(&f, {"--max-tokens", "7", "--json", "--no-enable-prefix-caching"}).ok());
  EXPECT_EQ(*f.GetInt("max-tokens", 0), 7);
  EXPECT_TRUE(f.GetBool("json", false));
  EXPECT_FALSE(f.GetBool("enable-prefix-caching", true));
}

TEST(FlagsTest, EqualsForm) {
  Flags f;
  f.Value("temperature", "");
  ASSERT_TRUE(ParseArgs(&f, {"--temperature=0.5"}).ok());
  EXPECT_DOUBLE_EQ(*f.GetDouble("temperature", 1.0), 0.5);
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  Flags f;
  f.Value("max-tokens", "");
  Status s = ParseArgs(&f, {"--bogus"});
  EXPECT_NE(s.message().find("--bogus"), std::string::npos);
  Flags g;
  g.Value("max-tokens", "");
  EXPECT_FALSE(ParseArgs(&g, {"--max-tokens"}).ok());
  ASSERT_TRUE(ParseArgs(&g, {"--max-tokens", "x7"}).ok());
  auto v = g.GetInt("max-tokens", 0);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("max-tokens"), std::string::npos);
}

TEST(FlagsTest, IdList) {
  auto ids = ParseIdList("1, 2,3");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FALSE(ParseIdList("1,,2").ok());
  EXPECT_FALSE(ParseIdList("-1").ok());
  EXPECT_FALSE(ParseIdList("").ok());
}

TEST(FlagsTest, KvTierFlags) {
  Flags f;
  DeclareEngineFlags(&f);
  ASSERT_TRUE(ParseArgs(&f, {"--model", "m", "--cpu-offload-gb", "1.5", "--disk-cache-dir", "/tmp/k",
                             "--disk-cache-gb", "2", "--redis-url", "redis://h:7/1",
                             "--redis-ttl", "60"})
                  .ok());
  EngineOptions o;
  ASSERT_TRUE(EngineOptionsFromFlags(f, &o).ok());
  EXPECT_EQ(o.cache.cpu_offload_bytes, int64_t{3} << 29);
  EXPECT_EQ(o.cache.disk_cache_dir, "/tmp/k");
  EXPECT_EQ(o.cache.disk_cache_bytes, int64_t{2} << 30);
  EXPECT_EQ(o.cache.redis_url, "redis://h:7/1");
  EXPECT_EQ(o.cache.redis_ttl_s, 60);
  // Bad values are errors that name the flag or field.
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--model", "m", "--cpu-offload-gb", "-1"},
        std::vector<std::string>{"--model", "m", "--disk-cache-dir", "d", "--disk-cache-gb", "0"},
        std::vector<std::string>{"--model", "m", "--redis-url", "http://h"},
        std::vector<std::string>{"--model", "m", "--cpu-offload-gb", "1",
                                 "--no-enable-prefix-caching"}}) {
    Flags g;
    DeclareEngineFlags(&g);
    ASSERT_TRUE(ParseArgs(&g, bad).ok());
    EngineOptions e;
    const Status s = EngineOptionsFromFlags(g, &e);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad[2];
  }
}

}  // namespace
}  // namespace kiln::cli
