// histogram.h - log-linear latency histogram for mxedge-loadgen.
//
// DESCRIPTION
//   A small HdrHistogram-like recorder of durations in nanoseconds. Values below
//   2 * kSubBuckets are counted exactly; above that every power of two is split
//   into kSubBuckets equal buckets, so a bucket is at most 1/128 of its lower
//   edge wide and a reported percentile (the bucket's midpoint) is within 0.4%
//   of the true value. Recording is two shifts and an increment: cheap enough to
//   call on every reply of every session.
//
//   Each worker thread owns its histograms; the main thread merges them after
//   the workers have been joined, so nothing here is synchronised.
//
// STANDARDS
//   None. The bucketing follows the idea of Gil Tene's HdrHistogram, not its
//   serialisation format.
//
// SECURITY
//   Values come from the local monotonic clock, never from the network. Values
//   beyond the top bucket (about 73 minutes) are clamped into it, so no input can
//   index outside the counts array.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace mxedge::loadgen {

class Histogram {
 public:
  // Records one duration. Negative durations (which a monotonic clock cannot
  // produce) are counted as zero rather than trusted as array indices.
  void record(std::int64_t value_ns);

  // Adds every count of other into this histogram.
  void merge(const Histogram& other);

  // Value at quantile q in [0, 1], in nanoseconds: the midpoint of the bucket
  // holding the ceil(q * count)-th smallest value, clamped to [min, max].
  // Returns 0 for an empty histogram.
  [[nodiscard]] std::int64_t quantile(double q) const;

  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::int64_t min() const { return count_ ? min_ : 0; }
  [[nodiscard]] std::int64_t max() const { return max_; }
  [[nodiscard]] double mean() const;

 private:
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;
  // 2^42 ns is about 73 minutes: far beyond any --timeout anyone would use.
  static constexpr unsigned kMaxValueBits = 42;
  static constexpr std::size_t kBucketCount = kSubBuckets * (kMaxValueBits - kSubBucketBits) + kSubBuckets;

  static std::size_t index_of(std::uint64_t value);
  static std::uint64_t lowest_of(std::size_t index);
  static std::uint64_t highest_of(std::size_t index);

  std::array<std::uint64_t, kBucketCount> counts_{};
  std::uint64_t count_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace mxedge::loadgen
