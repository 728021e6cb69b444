// Versions of the packages a corpus comes from, recorded in the manifest and folded into the change check:
// Debian/Ubuntu packages from dpkg's status database, npm packages from their package.json.
#pragma once
#include <string>

namespace dytrain {

// The installed version of an apt package, or "" when it is not installed (or dpkg's database is absent).
std::string dpkg_version(const std::string& package, const std::string& status_file = "/var/lib/dpkg/status");

// The version in PREFIX/node_modules/PACKAGE/package.json, or "" when it is not installed.
std::string npm_version(const std::string& prefix, const std::string& package);

// The command that installs an apt package, for error messages.
std::string apt_install_hint(const std::string& package);

// The command that installs an npm package into PREFIX, for error messages.
std::string npm_install_hint(const std::string& prefix, const std::string& package);

}  // namespace dytrain
