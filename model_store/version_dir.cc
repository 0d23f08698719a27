#include "model_store/version_dir.h"

#include <stdio.h>

#include <algorithm>
#include <filesystem>

#include "model_store/internal/file_io.h"
#include "model_store/internal/names.h"

namespace eddy::model_store {

namespace fs = std::filesystem;
using internal::IoError;
using internal::ParseVersionDirName;

std::string VersionDirName(uint64_t version) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "v%012llu", static_cast<unsigned long long>(version));
  return buf;
}

StatusOr<std::vector<uint64_t>> ListVersions(const std::string& root) {
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return NotFoundError("model root " + root + " does not exist");
    }
    return IoError(ec, "list", root);
  }
  std::vector<uint64_t> versions;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    auto v = ParseVersionDirName(it->path().filename().string());
    std::error_code type_ec;
    if (v && it->is_directory(type_ec)) versions.push_back(*v);
  }
  if (ec) return IoError(ec, "list", root);
  std::sort(versions.begin(), versions.end());
  return versions;
}

}  // namespace eddy::model_store
