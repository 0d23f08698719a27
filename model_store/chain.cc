#include "model_store/chain.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "model_store/internal/file_io.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {

using internal::JoinPath;
using proto::Manifest;

StatusOr<std::vector<uint64_t>> ResolveChain(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  const std::set<uint64_t> committed(versions.begin(), versions.end());
  if (committed.count(version) == 0) {
    std::string around;
    auto above = committed.upper_bound(version);
    if (above != committed.begin()) {
      around += "newest below: " + std::to_string(*std::prev(above));
    }
    if (above != committed.end()) {
      around += std::string(around.empty() ? "" : ", ") + "oldest above: " + std::to_string(*above);
    }
    return NotFoundError("version " + std::to_string(version) + " is not committed under " + root +
                         " (" + (around.empty() ? "no versions" : around) + ")");
  }
  std::vector<uint64_t> chain;
  uint64_t v = version;
  uint64_t base = 0;
  while (true) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(root, VersionDirName(v))));
    const Manifest& m = r.manifest();
    if (base != 0 && m.base_version() != base) {
      return DataLossError("version " + std::to_string(v) + " has base " +
                           std::to_string(m.base_version()) + " but its delta " +
                           std::to_string(chain.back()) + " expects base " + std::to_string(base));
    }
    base = m.base_version();
    chain.push_back(v);
    if (m.kind() == Manifest::KIND_FULL) break;
    const uint64_t p = m.parent_version();
    if (committed.count(p) == 0) {
      if (p == m.base_version()) {
        return NotFoundError("version " + std::to_string(version) + " needs full version " +
                             std::to_string(p) +
                             " (the root of its chain), which is missing under " + root);
      }
      return NotFoundError("version " + std::to_string(version) + " needs delta " +
                           std::to_string(p) + " (parent of " + std::to_string(v) +
                           "), which is missing under " + root + ": the chain to full version " +
                           std::to_string(m.base_version()) + " is broken");
    }
    v = p;  // strictly decreasing (validated), so this ends
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

}  // namespace eddy::model_store
