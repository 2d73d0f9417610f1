// YAML → mxedge.config.v1 protobuf, by reflection over the message descriptors, so a field added to
// config.proto is configurable without touching this file. See config_loader.h.
#include "policy/config_loader.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "policy/config_defaults.h"

namespace mxedge::config {
namespace {

namespace pb = google::protobuf;
using mxedge::config::v1::Config;

struct Place {
  int line = 0;
  int column = 0;
};

class Mapper {
 public:
  explicit Mapper(std::string file) : file_(std::move(file)) {}

  void map_message(const YAML::Node& node, pb::Message& msg, const std::string& path) {
    remember(path, node);
    if (!node.IsMap()) {
      if (node.IsNull()) return;  // "key:" with nothing after it: an empty section
      error(node, describe(path) + " must be a mapping of keys to values");
      return;
    }
    const pb::Descriptor* desc = msg.GetDescriptor();
    const pb::Reflection* refl = msg.GetReflection();
    std::map<std::string, bool> seen;
    for (const auto& kv : node) {
      std::string key;
      try {
        key = kv.first.as<std::string>();
      } catch (const YAML::Exception&) {
        error(kv.first, "keys must be plain strings");
        continue;
      }
      const pb::FieldDescriptor* field = desc->FindFieldByName(key);
      std::string child = path.empty() ? key : path + "." + key;
      if (field == nullptr) {
        error(kv.first, "unknown key '" + key + "'" + (path.empty() ? "" : " in " + path) + expected_keys(desc));
        continue;
      }
      if (seen[key]) {
        error(kv.first, "duplicate key '" + key + "'");
        continue;
      }
      seen[key] = true;
      remember(child, kv.second);
      if (field->is_repeated()) {
        map_repeated(kv.second, msg, refl, field, child);
      } else {
        map_single(kv.second, msg, refl, field, child);
      }
    }
  }

  std::vector<ConfigError> errors;
  std::map<std::string, Place> places;

 private:
  static std::string describe(const std::string& path) { return path.empty() ? "the configuration" : "'" + path + "'"; }

  static std::string expected_keys(const pb::Descriptor* desc) {
    std::string s = " (expected one of: ";
    for (int i = 0; i < desc->field_count(); ++i) {
      if (i) s += ", ";
      s += desc->field(i)->name();
    }
    return s + ")";
  }

  void remember(const std::string& path, const YAML::Node& node) {
    const YAML::Mark m = node.Mark();
    if (m.line >= 0) places[path] = Place{m.line + 1, m.column + 1};
  }

  void error(const YAML::Node& node, std::string message) {
    const YAML::Mark m = node.Mark();
    errors.push_back(ConfigError{file_, m.line >= 0 ? m.line + 1 : 0, m.column >= 0 ? m.column + 1 : 0,
                                 std::move(message)});
  }

  void map_repeated(const YAML::Node& node, pb::Message& msg, const pb::Reflection* refl,
                    const pb::FieldDescriptor* field, const std::string& path) {
    if (node.IsNull()) return;
    if (!node.IsSequence()) {
      error(node, "'" + path + "' must be a list");
      return;
    }
    size_t i = 0;
    for (const auto& item : node) {
      std::string child = path + "[" + std::to_string(i++) + "]";
      remember(child, item);
      if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        map_message(item, *refl->AddMessage(&msg, field), child);
        continue;
      }
      if (!item.IsScalar()) {
        error(item, "'" + child + "' must be a single value");
        continue;
      }
      const std::string text = item.Scalar();
      switch (field->cpp_type()) {
        case pb::FieldDescriptor::CPPTYPE_STRING: refl->AddString(&msg, field, text); break;
        case pb::FieldDescriptor::CPPTYPE_UINT32:
          if (auto v = unsigned_value(item, child, std::numeric_limits<uint32_t>::max()))
            refl->AddUInt32(&msg, field, static_cast<uint32_t>(*v));
          break;
        case pb::FieldDescriptor::CPPTYPE_UINT64:
          if (auto v = unsigned_value(item, child, std::numeric_limits<uint64_t>::max())) refl->AddUInt64(&msg, field, *v);
          break;
        case pb::FieldDescriptor::CPPTYPE_ENUM:
          if (auto v = enum_value(item, field, child)) refl->AddEnumValue(&msg, field, *v);
          break;
        default: error(item, "'" + child + "': unsupported list element type"); break;
      }
    }
  }

  void map_single(const YAML::Node& node, pb::Message& msg, const pb::Reflection* refl,
                  const pb::FieldDescriptor* field, const std::string& path) {
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (field->message_type()->full_name() == "google.protobuf.Duration") {
        if (!node.IsScalar()) {
          error(node, "'" + path + "' must be a duration such as 30s, 5m or 250ms");
          return;
        }
        auto ms = parse_duration_ms(node.Scalar());
        if (!ms) {
          error(node, "'" + path + "': invalid duration '" + node.Scalar() + "' (use e.g. 30s, 5m, 1h, 250ms)");
          return;
        }
        auto* d = static_cast<pb::Duration*>(refl->MutableMessage(&msg, field));
        d->set_seconds(*ms / 1000);
        d->set_nanos(static_cast<int32_t>((*ms % 1000) * 1000000));
        return;
      }
      map_message(node, *refl->MutableMessage(&msg, field), path);
      return;
    }
    if (!node.IsScalar()) {
      error(node, "'" + path + "' must be a single value, not a " + std::string(node.IsMap() ? "mapping" : "list"));
      return;
    }
    const std::string text = node.Scalar();
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: refl->SetString(&msg, field, text); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (text == "true" || text == "yes" || text == "on") {
          refl->SetBool(&msg, field, true);
        } else if (text == "false" || text == "no" || text == "off") {
          refl->SetBool(&msg, field, false);
        } else {
          error(node, "'" + path + "' must be true or false, not '" + text + "'");
        }
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        if (auto v = unsigned_value(node, path, std::numeric_limits<uint32_t>::max()))
          refl->SetUInt32(&msg, field, static_cast<uint32_t>(*v));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        if (auto v = unsigned_value(node, path, std::numeric_limits<uint64_t>::max())) refl->SetUInt64(&msg, field, *v);
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        if (auto v = enum_value(node, field, path)) refl->SetEnumValue(&msg, field, *v);
        break;
      default: error(node, "'" + path + "': unsupported field type"); break;
    }
  }

  std::optional<uint64_t> unsigned_value(const YAML::Node& node, const std::string& path, uint64_t max) {
    auto v = parse_byte_size(node.Scalar());
    if (!v) {
      error(node, "'" + path + "' must be a non-negative whole number (sizes may carry a unit such as 64KiB or 50MiB), not '" +
                      node.Scalar() + "'");
      return std::nullopt;
    }
    if (*v > max) {
      error(node, "'" + path + "' is out of range (at most " + std::to_string(max) + ")");
      return std::nullopt;
    }
    return v;
  }

  // "starttls" → TLS_MODE_STARTTLS: the enum's name in UPPER_SNAKE is the prefix.
  std::optional<int> enum_value(const YAML::Node& node, const pb::FieldDescriptor* field, const std::string& path) {
    const pb::EnumDescriptor* e = field->enum_type();
    std::string prefix;
    for (char c : e->name()) {
      if (std::isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
      prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    prefix += '_';
    std::string wanted = prefix;
    for (char c : node.Scalar()) wanted += static_cast<char>(c == '-' ? '_' : std::toupper(static_cast<unsigned char>(c)));
    std::string choices;
    for (int i = 0; i < e->value_count(); ++i) {
      const pb::EnumValueDescriptor* v = e->value(i);
      if (v->number() == 0) continue;  // X_UNSPECIFIED is never a valid setting
      std::string name = v->name().substr(prefix.size());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!choices.empty()) choices += ", ";
      choices += name;
      if (v->name() == wanted) return v->number();
    }
    error(node, "'" + path + "': invalid value '" + node.Scalar() + "' (expected one of: " + choices + ")");
    return std::nullopt;
  }

  std::string file_;
};

Place place_for(const std::map<std::string, Place>& places, std::string path) {
  // Fall back to the nearest enclosing setting that appears in the file.
  while (true) {
    auto it = places.find(path);
    if (it != places.end()) return it->second;
    auto cut = path.find_last_of(".[");
    if (cut == std::string::npos) return Place{};
    path.resize(cut);
  }
}

}  // namespace

std::string ConfigError::to_string() const {
  std::ostringstream s;
  s << file;
  if (line > 0) s << ':' << line << ':' << column;
  s << ": " << message;
  return s.str();
}

std::string LoadResult::error_text() const {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  text.remove_prefix(i);
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data()) return std::nullopt;
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  uint64_t mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "K" || unit == "k") mult = 1ULL << 10;
  else if (unit == "MiB" || unit == "M") mult = 1ULL << 20;
  else if (unit == "GiB" || unit == "G") mult = 1ULL << 30;
  else if (unit == "KB" || unit == "kB") mult = 1000ULL;
  else if (unit == "MB") mult = 1000ULL * 1000;
  else if (unit == "GB") mult = 1000ULL * 1000 * 1000;
  else return std::nullopt;
  if (value > std::numeric_limits<uint64_t>::max() / mult) return std::nullopt;
  return value * mult;
}

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  int64_t total = 0;
  bool any = false;
  while (!text.empty()) {
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr == text.data() || value < 0) return std::nullopt;
    text.remove_prefix(static_cast<size_t>(ptr - text.data()));
    int64_t mult;
    if (text.empty()) {
      if (any) return std::nullopt;  // "1m30" is ambiguous
      mult = 1000;                   // a bare number is seconds
    } else if (text.starts_with("ms")) {
      mult = 1;
      text.remove_prefix(2);
    } else if (text[0] == 's') {
      mult = 1000;
      text.remove_prefix(1);
    } else if (text[0] == 'm') {
      mult = 60 * 1000;
      text.remove_prefix(1);
    } else if (text[0] == 'h') {
      mult = 3600 * 1000;
      text.remove_prefix(1);
    } else if (text[0] == 'd') {
      mult = 86400 * 1000;
      text.remove_prefix(1);
    } else {
      return std::nullopt;
    }
    if (value > std::numeric_limits<int64_t>::max() / mult / 2) return std::nullopt;
    total += value * mult;
    any = true;
  }
  if (!any) return std::nullopt;
  return total;
}

LoadResult load_config_text(std::string_view yaml_text, std::string_view file_name, unsigned files) {
  LoadResult result;
  std::string file(file_name);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::ParserException& e) {
    result.errors.push_back(ConfigError{file, e.mark.line + 1, e.mark.column + 1, "YAML syntax error: " + e.msg});
    return result;
  }
  Config config;
  Mapper mapper(file);
  if (root.IsNull()) {
    result.errors.push_back(ConfigError{file, 0, 0, "the configuration is empty"});
    return result;
  }
  mapper.map_message(root, config, "");
  if (!mapper.errors.empty()) {
    result.errors = std::move(mapper.errors);
    return result;
  }
  apply_defaults(config);
  validate(config, [&](const std::string& path, const std::string& message) {
    Place p = place_for(mapper.places, path);
    result.errors.push_back(ConfigError{file, p.line, p.column, message});
  }, files);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_config_file(const std::string& path, unsigned files) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.errors.push_back(ConfigError{path, 0, 0, "cannot open the configuration file: " + std::string(std::strerror(errno))});
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), path, files);
}

}  // namespace mxedge::config
