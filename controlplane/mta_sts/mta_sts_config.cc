#include "controlplane/mta_sts/mta_sts_config.h"

#include "policy/duration.h"

namespace mxedge::mta_sts {
FetchOptions fetch_options(const config::v1::MtaSts& c) {
  FetchOptions o;
  o.ca_file = c.ca_file();
  o.proxy = c.proxy();
  o.connect_timeout = config::to_milliseconds(c.connect_timeout());
  o.total_timeout = config::to_milliseconds(c.fetch_timeout());
  return o;
}

CacheOptions cache_options(const config::v1::MtaSts& c) {
  CacheOptions o;
  o.path = c.cache_file();
  o.txt_recheck = std::chrono::seconds(c.txt_recheck().seconds());
  o.backoff_min = std::chrono::seconds(c.backoff_min().seconds());
  o.backoff_max = std::chrono::seconds(c.backoff_max().seconds());
  o.evict_unused = std::chrono::seconds(c.evict_unused().seconds());
  return o;
}

}  // namespace mxedge::mta_sts
