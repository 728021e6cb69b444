// dpkg's status file is a list of stanzas separated by blank lines; a package counts as installed when its
// Status line ends in "installed" (a removed package keeps a stanza with "config-files" or "not-installed").
// package.json is read with yaml-cpp, which parses the JSON subset npm writes.
#include "trainer/corpus/packages.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>

namespace dytrain {

std::string dpkg_version(const std::string& package, const std::string& status_file) {
  std::ifstream in(status_file);
  std::string line, name, version, status;
  auto finish = [&]() {
    const bool installed = status.size() >= 9 && status.compare(status.size() - 9, 9, "installed") == 0 &&
                           status.find("not-installed") == std::string::npos;
    return name == package && installed;
  };
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (finish()) return version;
      name.clear();
      version.clear();
      status.clear();
    } else if (line.rfind("Package: ", 0) == 0) {
      name = line.substr(9);
    } else if (line.rfind("Version: ", 0) == 0) {
      version = line.substr(9);
    } else if (line.rfind("Status: ", 0) == 0) {
      status = line.substr(8);
    }
  }
  return finish() ? version : "";
}

std::string npm_version(const std::string& prefix, const std::string& package) {
  const std::string path = prefix + "/node_modules/" + package + "/package.json";
  if (!std::filesystem::is_regular_file(path)) return "";
  try {
    const YAML::Node json = YAML::LoadFile(path);
    return json["version"] ? json["version"].as<std::string>() : "";
  } catch (const YAML::Exception&) {
    return "";
  }
}

std::string apt_install_hint(const std::string& package) {
  return "`apt-get install -y --no-install-recommends " + package + "`";
}

std::string npm_install_hint(const std::string& prefix, const std::string& package) {
  return "`npm install --prefix " + prefix + " " + package + "`";
}

}  // namespace dytrain
