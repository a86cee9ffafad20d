// tests/test_main.cpp — shared GoogleTest main: prints the seed (PLX_SEED) first.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/support.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::printf("plx tests: PLX_SEED=%llu PLX_REPEAT=%d (set them to reproduce; rapidcheck reads RC_PARAMS)\n",
              static_cast<unsigned long long>(plx::test::seed()), plx::test::repeat());
  return RUN_ALL_TESTS();
}
