// RunStore (versions, splits, runs, crash recovery) and DiffSpecs.
#include "workflow/run_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "workflow/spec_diff.h"

namespace kiln::workflow {
namespace {

std::string TempDb() {
  char tmpl[] = "/tmp/kiln-runstore-XXXXXX";
  const int fd = mkstemp(tmpl);
  close(fd);
  std::remove(tmpl);
  return tmpl;
}

const Json kSpecV1 = Json::parse(R"({"name":"w","nodes":[{"id":"start","type":"start"},
  {"id":"a","type":"template","template":"one"},{"id":"out","type":"end"}]})");

TEST(RunStoreTest, PublishRollbackAndImmutableVersions) {
  auto store = RunStore::Open(":memory:");
  ASSERT_TRUE(store.ok());
  RunStore& s = **store;
  EXPECT_EQ(s.Publish("w", "").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(s.Save("w", kSpecV1).ok());
  EXPECT_EQ(s.PickVersion("w", "u").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(*s.Publish("w", "first"), 1);
  Json v2 = kSpecV1;
  v2["nodes"][1]["template"] = "two";
  ASSERT_TRUE(s.Save("w", v2).ok());
  EXPECT_EQ(*s.Publish("w", ""), 2);
  EXPECT_EQ(s.Version("w", 1)->spec, kSpecV1);  // the draft changed, version 1 did not
  EXPECT_EQ(s.Get("w")->current_version, 2);
  ASSERT_TRUE(s.Rollback("w", 1).ok());
  EXPECT_EQ(*s.PickVersion("w", "anyone"), 1);
  EXPECT_FALSE(s.Rollback("w", 7).ok());
  EXPECT_EQ(s.Versions("w")->size(), 2u);
}

TEST(RunStoreTest, SplitIsStickyAndProportional) {
  auto store = RunStore::Open(":memory:");
  RunStore& s = **store;
  ASSERT_TRUE(s.Save("w", kSpecV1).ok());
  ASSERT_TRUE(s.Publish("w", "").ok());
  ASSERT_TRUE(s.Publish("w", "").ok());
  EXPECT_FALSE(s.SetSplit("w", {{1, 30}, {3, 70}}).ok());  // version 3 does not exist
  EXPECT_FALSE(s.SetSplit("w", {{1, 0}, {2, 70}}).ok());
  ASSERT_TRUE(s.SetSplit("w", {{1, 30}, {2, 70}}).ok());
  for (int trial = 0; trial < 3; ++trial) {
    int v1 = 0;
    for (int i = 0; i < 1000; ++i) {
      const std::string user = "trial" + std::to_string(trial) + "-user-" + std::to_string(i);
      const int v = *s.PickVersion("w", user);
      EXPECT_EQ(*s.PickVersion("w", user), v);  // sticky
      v1 += v == 1;
    }
    EXPECT_NEAR(v1, 300, 50) << "trial " << trial;
  }
  ASSERT_TRUE(s.SetSplit("w", {}).ok());
  EXPECT_EQ(*s.PickVersion("w", "x"), 2);
}

// An in-memory store with workflow "w" published twice.
std::unique_ptr<RunStore> StoreWithTwoVersions() {
  auto store = RunStore::Open(":memory:");
  EXPECT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Save("w", kSpecV1).ok());
  EXPECT_EQ(*(*store)->Publish("w", ""), 1);
  EXPECT_EQ(*(*store)->Publish("w", ""), 2);
  return std::move(*store);
}

// Regression: runs without a user all hashed the same key, so the whole anonymous traffic went to
// one version of a split; they draw at random now.
TEST(RunStoreTest, RunsWithoutAUserFollowTheSplitWeights) {
  auto store = StoreWithTwoVersions();
  RunStore& s = *store;
  ASSERT_TRUE(s.SetSplit("w", {{1, 30}, {2, 70}}).ok());
  int v1 = 0;
  for (int i = 0; i < 4000; ++i) v1 += *s.PickVersion("w", "") == 1;
  EXPECT_NEAR(v1, 1200, 200);  // 7 standard deviations
}

// Regression: a rollback while a split was set left traffic split (the rollback had no effect on
// most runs). Rollback and publish choose where all traffic goes: they clear the split.
TEST(RunStoreTest, RollbackAndPublishClearTheSplit) {
  auto store = StoreWithTwoVersions();
  RunStore& s = *store;
  ASSERT_TRUE(s.SetSplit("w", {{1, 50}, {2, 50}}).ok());
  ASSERT_TRUE(s.Rollback("w", 1).ok());
  EXPECT_TRUE(s.Get("w")->split.empty());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(*s.PickVersion("w", "user-" + std::to_string(i)), 1);
  ASSERT_TRUE(s.SetSplit("w", {{1, 50}, {2, 50}}).ok());
  EXPECT_EQ(*s.Publish("w", ""), 3);
  EXPECT_TRUE(s.Get("w")->split.empty());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(*s.PickVersion("w", "user-" + std::to_string(i)), 3);
}

TEST(RunStoreTest, InterruptedRunsAreMarkedFailedOnReopenAndNothingElseChanges) {
  const std::string path = TempDb();
  std::string done_json;
  {
    auto store = RunStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    RunStore& s = **store;
    ASSERT_TRUE(s.Save("w", kSpecV1).ok());
    ASSERT_TRUE(s.Publish("w", "").ok());
    ASSERT_TRUE(s.BeginRun("run-done", "w", 1, "u", Json{{"x", 1}}).ok());
    NodeRecord rec;
    rec.node_id = "a";
    rec.status = "succeeded";
    rec.path = "primary";
    ASSERT_TRUE(s.AddNodeRecord("run-done", rec.ToJson()).ok());
    RunResult r;
    r.run_id = "run-done";
    r.status = "succeeded";
    r.outputs = {{"y", 2}};
    ASSERT_TRUE(s.FinishRun("w", r).ok());
    ASSERT_TRUE(s.BeginRun("run-cut", "w", 1, "u", Json::object()).ok());
    ASSERT_TRUE(s.AddNodeRecord("run-cut", rec.ToJson()).ok());
    done_json = s.GetRun("run-done")->dump();
    EXPECT_EQ((*s.GetRun("run-cut"))["status"], "running");
  }  // "crash": the process goes away with run-cut still running
  int recovered = -1;
  auto store = RunStore::Open(path, &recovered);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(recovered, 1);
  Json cut = *(*store)->GetRun("run-cut");
  EXPECT_EQ(cut["status"], "failed");
  EXPECT_NE(cut["error"].get<std::string>().find("interrupted"), std::string::npos);
  EXPECT_EQ(cut["nodes"].size(), 1u);  // what it had done is kept
  EXPECT_EQ((*store)->GetRun("run-done")->dump(), done_json);
  EXPECT_EQ((*store)->Get("w")->current_version, 1);
  Json stats = *(*store)->Stats("w");
  EXPECT_EQ(stats[0]["runs"], 2);
  EXPECT_EQ(stats[0]["failed"], 1);
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
}

TEST(SpecDiffTest, NodesEdgesAndFields) {
  Json b = kSpecV1;
  b["nodes"][1]["template"] = "uno";
  b["nodes"].push_back({{"id", "extra"}, {"type", "template"}, {"template", "z"}});
  b["limits"] = {{"timeout_s", 5}};
  const Json d = DiffSpecs(kSpecV1, b);
  EXPECT_FALSE(d["identical"]);
  EXPECT_EQ(d["nodes"]["added"], Json::array({"extra"}));
  ASSERT_EQ(d["nodes"]["changed"].size(), 1u);
  EXPECT_EQ(d["nodes"]["changed"][0]["fields"][0],
            (Json{{"field", "template"}, {"from", "one"}, {"to", "uno"}}));
  EXPECT_EQ(d["edges"]["added"], Json::array({"out → extra"}));
  EXPECT_EQ(d["edges"]["removed"], Json::array());
  EXPECT_EQ(d["fields"][0]["field"], "limits");
  EXPECT_TRUE(DiffSpecs(kSpecV1, kSpecV1)["identical"]);
}

}  // namespace
}  // namespace kiln::workflow
