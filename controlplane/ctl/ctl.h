// mxedgectl's shared pieces: the global options every command sees, the exit codes, and output.
//
// Exit codes (the same for every command; the README lists them):
//   0  success (verified, valid, match, healthy)
//   1  a negative answer: not verified, invalid, no match, unhealthy, problems found
//   2  usage: bad arguments or options
//   3  a daemon cannot be reached (or the feature is off)
//   4  permission denied (not root, not in the admin group)
//   5  not found (queue id, domain, connector)
//   6  the operation failed
#pragma once

// GCC 12's -Wnull-dereference reports a false positive inside CLI11's inline CLI::detail::split.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include <google/protobuf/message.h>

#include <string>

namespace mxedge::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNegative = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitPermission = 4;
inline constexpr int kExitNotFound = 5;
inline constexpr int kExitFailed = 6;

struct Ctl {
  bool json = false;                                 // --json: machine-readable output on stdout
  std::string socket;                                // --socket (default: the config's management.socket)
  std::string config_file = "/etc/mxedge/mxedge.yaml";  // --config
  int exit_code = kExitOk;                           // set by the command that ran
};

// Prints `message` as JSON (proto3 JSON mapping, field names as in the .proto, defaults included).
void print_json(const google::protobuf::Message& message);
// Prints an error ("mxedgectl: <text>") on stderr; with --json also {"error": {"code", "message"}} on
// stdout, so scripts always get a document.
void print_error(const Ctl& ctl, const std::string& code, const std::string& text);

// Command groups; each adds its subcommands to `app`, and each subcommand's callback sets
// ctl.exit_code.
void add_offline_commands(CLI::App& app, Ctl& ctl);  // dane, sts, tlsa, config validate (no daemon)
void add_daemon_commands(CLI::App& app, Ctl& ctl);   // everything that talks to the daemons

}  // namespace mxedge::ctl
