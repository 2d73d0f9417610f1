#include "controlplane/ctl/offline/config_check.h"

#include <filesystem>

#include "policy/config_loader.h"

namespace mxedge::ctl::offline {

Report run_config_validate(const std::string& path) {
  Report rep;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {  // the loader would read it as an empty file
    rep.verdict = Verdict::kNegative;
    rep.json = {{"file", path}, {"valid", false}, {"errors", nlohmann::ordered_json::array()}};
    rep.json["errors"].push_back({{"file", path}, {"line", 0}, {"column", 0}, {"message", "is a directory"}});
    rep.text = path + ": is a directory\n";
    return rep;
  }
  const config::LoadResult loaded = config::load_config_file(path);
  rep.json["file"] = path;
  rep.json["valid"] = loaded.ok();
  rep.json["errors"] = nlohmann::ordered_json::array();
  if (loaded.ok()) {
    rep.text = path + ": valid\n";
    return rep;
  }
  rep.verdict = Verdict::kNegative;
  for (const auto& e : loaded.errors) {
    rep.json["errors"].push_back({{"file", e.file}, {"line", e.line}, {"column", e.column}, {"message", e.message}});
  }
  if (loaded.errors.size() == 1 && loaded.errors[0].line == 0 && loaded.errors[0].message.starts_with("cannot open")) {
    rep.text = loaded.error_text();  // unreadable: "FILE: cannot open the configuration file: <reason>"
    return rep;
  }
  rep.text = path + ": invalid (" + std::to_string(loaded.errors.size()) +
             (loaded.errors.size() == 1 ? " error)\n" : " errors)\n") + loaded.error_text();
  return rep;
}

}  // namespace mxedge::ctl::offline
