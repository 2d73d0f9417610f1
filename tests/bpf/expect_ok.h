// GoogleTest assertions for mxedge::xdp::Status: the failure message is the status text.
#pragma once

#include <gtest/gtest.h>

#define MXEDGE_ASSERT_OK(expr)                                      \
  do {                                                              \
    const ::mxedge::xdp::Status mxedge_status_ = (expr);            \
    ASSERT_TRUE(mxedge_status_.ok()) << mxedge_status_.to_string(); \
  } while (0)

#define MXEDGE_EXPECT_OK(expr)                                      \
  do {                                                              \
    const ::mxedge::xdp::Status mxedge_status_ = (expr);            \
    EXPECT_TRUE(mxedge_status_.ok()) << mxedge_status_.to_string(); \
  } while (0)
