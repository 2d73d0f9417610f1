// mxedgectl: the operator's CLI. Offline tools (dane verify, sts, tlsa generate, config validate) run
// in-process; everything else is a request to mxedge-controlplane's management API
// (policy/proto/mxedge/mgmt/v1/mgmt.proto), which forwards what the data plane owns.
#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "controlplane/ctl/ctl.h"

namespace mxedge::ctl {

void print_json(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out;
  if (out.empty() || out.back() != '\n') std::cout << "\n";
}

void print_error(const Ctl& ctl, const std::string& code, const std::string& text) {
  std::cerr << "mxedgectl: " << text << "\n";
  if (ctl.json) {
    std::string escaped;
    for (char c : text) {
      if (c == '"' || c == '\\') escaped += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        escaped += ' ';
        continue;
      }
      escaped += c;
    }
    std::cout << "{\"error\": {\"code\": \"" << code << "\", \"message\": \"" << escaped << "\"}}\n";
  }
}

}  // namespace mxedge::ctl

int main(int argc, char** argv) {
  using namespace mxedge::ctl;
  Ctl ctl;
  CLI::App app{"mxedgectl: manage the mxedge gateway (status, stats, policy, check, queue, trace, XDP lists, "
               "connectors, config) and verify DANE / MTA-STS material offline."};
  app.set_help_all_flag("--help-all", "Show the help of every command");
  app.add_flag("--json", ctl.json, "Machine-readable output (JSON) on stdout");
  app.add_option("--config", ctl.config_file, "Gateway configuration (for the socket path and offline tools)")
      ->capture_default_str();
  app.add_option("--socket", ctl.socket, "Management socket (default: the config's management.socket)");
  app.set_version_flag("--version", std::string("mxedgectl 0.1.0"));
  app.require_subcommand(1);
  app.fallthrough();
  add_offline_commands(app, ctl);
  add_daemon_commands(app, ctl);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return ctl.exit_code;
}
