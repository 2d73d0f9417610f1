#include "controlplane/resolver/dnssec_records.h"

#include <gtest/gtest.h>

namespace mxedge::resolver {
namespace {

// The IANA root KSK-2017 and its published DS (Debian dns-root-data root.key / root.ds).
constexpr const char* kRootKsk2017 =
    ". 172800 IN DNSKEY 257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5x"
    "QlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyWbRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+sqqls3eNbuv"
    "7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfdRUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR"
    "1AkUTV74bU=";

TEST(DnssecRecordsTest, RootKsk2017GivesThePublishedDs) {
  std::string err;
  auto ds = ds_from_dnskey(kRootKsk2017, DsDigest::kSha256, &err);
  ASSERT_TRUE(ds) << err;
  EXPECT_EQ(*ds, ". 172800 IN DS 20326 8 2 e06d44b80b8f1d39a95c0b0d7c65d08458e880409bbc683457104237c7f8ec8d");
  auto ds384 = ds_from_dnskey(kRootKsk2017, DsDigest::kSha384, &err);
  ASSERT_TRUE(ds384) << err;
  EXPECT_NE(ds384->find("IN DS 20326 8 4 "), std::string::npos) << *ds384;
}

TEST(DnssecRecordsTest, OnlySepKeysOfAZoneFile) {
  const std::string zone = std::string("; keys\n") + kRootKsk2017 + " ; KSK\n" +
                           ". 172800 IN DNSKEY 256 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3\n" +
                           ". 172800 IN NS a.root-servers.net.\n";
  std::string err;
  auto ds = ds_for_zone_keys(zone, DsDigest::kSha256, &err);
  ASSERT_EQ(ds.size(), 1u) << err;
  EXPECT_NE(ds[0].find("DS 20326 8 2"), std::string::npos);
}

TEST(DnssecRecordsTest, BadInputGivesClearErrors) {
  std::string err;
  EXPECT_FALSE(ds_from_dnskey("example. 300 IN A 192.0.2.1", DsDigest::kSha256, &err));
  EXPECT_EQ(err, "not a DNSKEY record");
  EXPECT_FALSE(ds_from_dnskey("example. 300 IN DNSKEY 257 3 13 !!!notbase64", DsDigest::kSha256, &err));
  EXPECT_NE(err.find("not a DNS record"), std::string::npos) << err;
  auto none = ds_for_zone_keys("a\nexample. IN DNSKEY 257 3 13 %%%\n", DsDigest::kSha256, &err);
  EXPECT_TRUE(none.empty());
  EXPECT_NE(err.find("line 2:"), std::string::npos) << err;
}

}  // namespace
}  // namespace mxedge::resolver
