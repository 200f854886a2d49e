#include "generation/stop_matcher.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

std::string Feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += m.Push(p);
  out += m.Flush();
  return out;
}

TEST(StopMatcherTest, NoStopsPassesThrough) {
  StopMatcher m({}, false);
  EXPECT_EQ(m.Push("hello"), "hello");
  EXPECT_EQ(m.Flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcherTest, StopInsideOnePiece) {
  StopMatcher m({"END"}, false);
  EXPECT_EQ(Feed(m, {"abcENDdef"}), "abc");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "END");
  EXPECT_EQ(m.Push("more"), "");
}

// Unchecked pieces (within min_tokens) pass a complete stop string through; a stop string that
// starts in an unchecked piece and ends in a checked one still stops.
TEST(StopMatcherTest, UncheckedPiecesAreNotSearched) {
  StopMatcher m({"e", "STOP"}, false);
  EXPECT_EQ(m.Push("the", false), "the");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push(" ST", false), " ");  // "ST" may start "STOP": held
  EXPECT_EQ(m.Push("OP and", true), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "STOP");
  StopMatcher n({"e"}, false);
  EXPECT_EQ(n.Push("the", false), "the");
  EXPECT_EQ(n.Push(" end", true), " ");
  EXPECT_EQ(n.matched(), "e");
}

TEST(StopMatcherTest, StopSplitAcrossPiecesNeverLeaks) {
  StopMatcher m({"\n\nUser:"}, false);
  std::string emitted;
  for (const char* p : {"Hi", " there", "\n", "\nUs", "er", ":", " ignored"}) {
    emitted += m.Push(p);
    // At no point may the emitted text contain any prefix of the stop string at its end that
    // later turns out to be the stop string.
    EXPECT_EQ(emitted.find('\n'), std::string::npos) << emitted;
  }
  EXPECT_EQ(emitted + m.Flush(), "Hi there");
}

TEST(StopMatcherTest, HeldBackTextIsReleasedWhenItDiverges) {
  StopMatcher m({"abc"}, false);
  EXPECT_EQ(m.Push("xa"), "x");
  EXPECT_EQ(m.Push("b"), "");
  EXPECT_EQ(m.Push("d"), "abd");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("ab"), "");
  EXPECT_EQ(m.Flush(), "ab");  // end of sequence: the held-back prefix was not a stop
}

TEST(StopMatcherTest, IncludeStopString) {
  StopMatcher m({"."}, true);
  EXPECT_EQ(Feed(m, {"One", " two.", " three"}), "One two.");
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo w"}, false);
  EXPECT_EQ(Feed(m, {"hel", "lo world"}), "hel");
  EXPECT_EQ(m.matched(), "lo w");
}

TEST(StopMatcherTest, OverlappingPrefixRetried) {
  // "aab" — the held-back "a" + "a" must still find the stop that starts at the second 'a'.
  StopMatcher m({"ab"}, false);
  EXPECT_EQ(Feed(m, {"a", "a", "b"}), "a");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, MultiByteUtf8StopSplit) {
  StopMatcher m({"é!"}, false);
  EXPECT_EQ(Feed(m, {"caf", "é", "!", "x"}), "caf");
}

}  // namespace
}  // namespace kiln
