// The mta_sts section of the configuration (mxedge.config.v1.MtaSts) as client options.
#pragma once

#include "controlplane/mta_sts/policy_cache.h"
#include "controlplane/mta_sts/policy_fetcher.h"
#include "mxedge/config/v1/config.pb.h"

namespace mxedge::mta_sts {

// `config` must have been through config::apply_defaults and config::validate.
FetchOptions fetch_options(const config::v1::MtaSts& config);
CacheOptions cache_options(const config::v1::MtaSts& config);

}  // namespace mxedge::mta_sts
