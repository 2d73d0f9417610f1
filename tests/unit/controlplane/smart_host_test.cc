// Unit tests for the connector smart_host syntax the control plane routes by
// (controlplane/push/policy_table.h: PolicyTable::parse_smart_host).
#include <gtest/gtest.h>

#include "controlplane/push/policy_table.h"

namespace mxedge::push {
namespace {

TEST(SmartHost, NamesAddressesAndPorts) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(PolicyTable::parse_smart_host("relay.example.net", &host, &port));
  EXPECT_EQ(host, "relay.example.net");
  EXPECT_EQ(port, 25);
  ASSERT_TRUE(PolicyTable::parse_smart_host("relay.example.net:587", &host, &port));
  EXPECT_EQ(port, 587);
  ASSERT_TRUE(PolicyTable::parse_smart_host("192.0.2.7:2525", &host, &port));
  EXPECT_EQ(host, "192.0.2.7");
  EXPECT_EQ(port, 2525);
  ASSERT_TRUE(PolicyTable::parse_smart_host("[2001:db8::7]:465", &host, &port));
  EXPECT_EQ(host, "2001:db8::7");
  EXPECT_EQ(port, 465);
  ASSERT_TRUE(PolicyTable::parse_smart_host("2001:db8::7", &host, &port));
  EXPECT_EQ(host, "2001:db8::7");
  EXPECT_EQ(port, 25);
  for (const char* bad : {"", "relay:", "relay:0", "relay:65536", "relay:12ab", "[2001:db8::7", ":25"})
    EXPECT_FALSE(PolicyTable::parse_smart_host(bad, &host, &port)) << bad;
}

}  // namespace
}  // namespace mxedge::push
