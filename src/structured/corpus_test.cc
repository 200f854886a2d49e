#include <gtest/gtest.h>
TEST(CorpusTest, Placeholder) {}
