// Shared by the benchmark binaries: latency summaries as JSON and the names file they read.
#pragma once

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mxedge::bench {

// n, median, p90, p99, max and mean of latencies in milliseconds.
inline nlohmann::json latency_summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
  };
  double sum = 0;
  for (double x : v) sum += x;
  return {{"n", v.size()},
          {"median_ms", pct(0.5)},
          {"p90_ms", pct(0.9)},
          {"p99_ms", pct(0.99)},
          {"max_ms", v.empty() ? 0.0 : v.back()},
          {"mean_ms", v.empty() ? 0 : sum / static_cast<double>(v.size())}};
}

// One name per line; blank lines skipped. Throws when the file is unreadable or empty.
inline std::vector<std::string> read_names(const char* path) {
  std::vector<std::string> names;
  FILE* f = fopen(path, "r");
  if (!f) throw std::runtime_error(std::string("cannot read names file ") + path);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (!s.empty()) names.push_back(s);
  }
  fclose(f);
  if (names.empty()) throw std::runtime_error(std::string("no names in ") + path);
  return names;
}

}  // namespace mxedge::bench
