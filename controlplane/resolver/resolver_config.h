// The resolver section of the configuration (mxedge.config.v1.Resolver) as resolver options.
#pragma once

#include "controlplane/resolver/destination.h"
#include "controlplane/resolver/resolver.h"
#include "mxedge/config/v1/config.pb.h"

namespace mxedge::resolver {

// `config` must have been through config::apply_defaults and config::validate.
ResolverOptions resolver_options(const config::v1::Resolver& config);
DestinationOptions destination_options(const config::v1::Resolver& config);

}  // namespace mxedge::resolver
