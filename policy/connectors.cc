#include "policy/connectors.h"

namespace mxedge::config {

const v1::Connector& default_connector() {
  static const v1::Connector c = [] {
    v1::Connector k;
    k.set_name("default");
    k.mutable_domains()->Add()->assign(1, '*');
    k.set_dane_mode(v1::CONNECTOR_MODE_OPPORTUNISTIC);
    k.set_mta_sts_mode(v1::CONNECTOR_MODE_OPPORTUNISTIC);
    k.set_min_tls_version("TLSv1.2");
    k.set_allow_cleartext(true);
    return k;
  }();
  return c;
}

const v1::Connector& select_connector(const v1::Config& config, std::string_view domain) {
  const v1::Connector* best = nullptr;
  size_t best_rank = 0;  // 0 none, 1 "*", 2 + suffix length for ".parent", SIZE_MAX exact
  for (const v1::Connector& k : config.connectors()) {
    for (const std::string& d : k.domains()) {
      size_t rank = 0;
      if (d == "*") rank = 1;
      else if (d.starts_with('.')) {
        if (domain.size() > d.size() && domain.ends_with(d)) rank = 2 + d.size();
      } else if (domain == d) {
        rank = SIZE_MAX;
      }
      if (rank > best_rank) {
        best_rank = rank;
        best = &k;
      }
    }
  }
  return best != nullptr ? *best : default_connector();
}

}  // namespace mxedge::config
