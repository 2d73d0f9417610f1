// histogram.cc - log-linear latency histogram for mxedge-loadgen.
//
// DESCRIPTION
//   Bucket index of a value v: below 2 * kSubBuckets the index is v itself.
//   Otherwise let e be the position of v's highest set bit and s = e - 7; the
//   top eight bits m = v >> s lie in [128, 255] and the index is 128 * s + m.
//   Consecutive powers of two therefore map onto consecutive runs of 128
//   buckets, each bucket [m << s, (m + 1) << s) wide 2^s, i.e. at most 1/128
//   of its values.
//
// STANDARDS
//   None.
//
// SECURITY
//   index_of() clamps to the last bucket; see histogram.h.
#include "histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace mxedge::loadgen {

std::size_t Histogram::index_of(std::uint64_t value) {
  constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << kMaxValueBits) - 1;
  value = std::min(value, kMaxValue);
  if (value < 2 * kSubBuckets) return static_cast<std::size_t>(value);
  const unsigned top_bit = static_cast<unsigned>(std::bit_width(value)) - 1;
  const unsigned shift = top_bit - kSubBucketBits;
  return static_cast<std::size_t>(kSubBuckets * shift + (value >> shift));
}

std::uint64_t Histogram::lowest_of(std::size_t index) {
  if (index < 2 * kSubBuckets) return index;
  const std::uint64_t shift = index / kSubBuckets - 1;
  const std::uint64_t mantissa = index - kSubBuckets * shift;
  return mantissa << shift;
}

std::uint64_t Histogram::highest_of(std::size_t index) {
  if (index < 2 * kSubBuckets) return index;
  const std::uint64_t shift = index / kSubBuckets - 1;
  return lowest_of(index) + (std::uint64_t{1} << shift) - 1;
}

void Histogram::record(std::int64_t value_ns) {
  value_ns = std::max<std::int64_t>(value_ns, 0);
  ++counts_[index_of(static_cast<std::uint64_t>(value_ns))];
  if (count_ == 0 || value_ns < min_) min_ = value_ns;
  if (value_ns > max_) max_ = value_ns;
  ++count_;
  sum_ += static_cast<long double>(value_ns);
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

std::int64_t Histogram::quantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  if (rank == count_) return max_;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t mid = lowest_of(i) + (highest_of(i) - lowest_of(i)) / 2;
      return std::clamp(static_cast<std::int64_t>(mid), min_, max_);
    }
  }
  return max_;
}

double Histogram::mean() const {
  if (count_ == 0) return 0;
  return static_cast<double>(sum_ / static_cast<long double>(count_));
}

}  // namespace mxedge::loadgen
