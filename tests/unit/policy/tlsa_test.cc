#include "policy/tlsa.h"

#include <gtest/gtest.h>

namespace mxedge::policy {
namespace {

TlsaRecord rec(uint8_t u, uint8_t s, uint8_t m, size_t len) { return TlsaRecord{u, s, m, std::vector<uint8_t>(len, 0xab)}; }

TEST(TlsaTest, DaneUsagesWithRightDigestLengthsAreUsable) {
  EXPECT_EQ(classify(rec(3, 1, 1, 32)), TlsaUsability::kUsable);
  EXPECT_EQ(classify(rec(2, 1, 1, 32)), TlsaUsability::kUsable);
  EXPECT_EQ(classify(rec(2, 0, 1, 32)), TlsaUsability::kUsable);
  EXPECT_EQ(classify(rec(3, 0, 2, 64)), TlsaUsability::kUsable);
  EXPECT_EQ(classify(rec(3, 1, 0, 91)), TlsaUsability::kUsable);  // full SPKI
}

TEST(TlsaTest, PkixUsagesAreUnusableForSmtp) {
  EXPECT_EQ(classify(rec(0, 0, 1, 32)), TlsaUsability::kPkixUsage);
  EXPECT_EQ(classify(rec(1, 1, 1, 32)), TlsaUsability::kPkixUsage);
}

TEST(TlsaTest, UnknownParametersAndWrongLengthsAreUnusable) {
  EXPECT_EQ(classify(rec(4, 1, 1, 32)), TlsaUsability::kUnknownUsage);
  EXPECT_EQ(classify(rec(255, 1, 1, 32)), TlsaUsability::kUnknownUsage);
  EXPECT_EQ(classify(rec(3, 2, 1, 32)), TlsaUsability::kUnknownSelector);
  EXPECT_EQ(classify(rec(3, 1, 3, 32)), TlsaUsability::kUnknownMatchingType);
  EXPECT_EQ(classify(rec(3, 1, 1, 20)), TlsaUsability::kWrongDigestLength);
  EXPECT_EQ(classify(rec(3, 1, 1, 64)), TlsaUsability::kWrongDigestLength);
  EXPECT_EQ(classify(rec(3, 1, 2, 32)), TlsaUsability::kWrongDigestLength);
  EXPECT_EQ(classify(rec(3, 1, 0, 0)), TlsaUsability::kEmptyData);
}

TEST(TlsaTest, RdataRoundTrip) {
  const uint8_t wire[] = {3, 1, 1, 0xde, 0xad};
  auto r = parse_tlsa_rdata(wire);
  ASSERT_TRUE(r);
  EXPECT_EQ(to_presentation(*r), "3 1 1 dead");
  EXPECT_FALSE(parse_tlsa_rdata(std::span<const uint8_t>(wire, 2)));
  auto empty = parse_tlsa_rdata(std::span<const uint8_t>(wire, 3));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->data.empty());
}

TEST(TlsaTest, PresentationParsing) {
  std::string err;
  auto r = parse_tlsa_presentation("3 1 1 DE AD be ef", &err);
  ASSERT_TRUE(r) << err;
  EXPECT_EQ(r->usage, 3);
  EXPECT_EQ(r->data, (std::vector<uint8_t>{0xde, 0xad, 0xbe, 0xef}));
  EXPECT_FALSE(parse_tlsa_presentation("3 1 1 abc", &err));
  EXPECT_NE(err.find("odd"), std::string::npos);
  EXPECT_FALSE(parse_tlsa_presentation("3 1 x ab", &err));
  EXPECT_NE(err.find("matching type"), std::string::npos);
  EXPECT_FALSE(parse_tlsa_presentation("300 1 1 ab", &err));
  EXPECT_NE(err.find("255"), std::string::npos);
  EXPECT_FALSE(parse_tlsa_presentation("3 1 1 zz", &err));
  EXPECT_FALSE(parse_tlsa_presentation("3 1 1", &err));
  EXPECT_NE(err.find("missing"), std::string::npos);
  EXPECT_FALSE(parse_tlsa_presentation("", &err));
}

}  // namespace
}  // namespace mxedge::policy
