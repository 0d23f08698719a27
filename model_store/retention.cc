#include "model_store/retention.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "model_store/internal/file_io.h"
#include "model_store/internal/names.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {

namespace fs = std::filesystem;
using internal::IoError;
using internal::JoinPath;
using internal::kDeletingTag;
using internal::ParseTempDirName;
using internal::ParseVersionDirName;
using internal::RenameNoReplace;
using internal::RootLock;
using internal::SyncDir;
using internal::UniqueFd;
using proto::Manifest;

namespace {

using ManifestMap = std::map<uint64_t, std::optional<Manifest>>;

// Manifests of `versions` under `root`; nullopt for those that cannot be read.
ManifestMap ReadManifests(const std::string& root, const std::vector<uint64_t>& versions) {
  ManifestMap manifests;
  for (uint64_t v : versions) {
    auto r = VersionReader::Open(JoinPath(root, VersionDirName(v)));
    if (r.ok()) {
      manifests.emplace(v, r->manifest());
    } else {
      manifests.emplace(v, std::nullopt);
    }
  }
  return manifests;
}

// The committed versions in the chain of `v` (v itself first, then its parents
// as far as they are committed and readable).
std::vector<uint64_t> ChainOf(const ManifestMap& manifests, uint64_t v) {
  std::vector<uint64_t> chain;
  auto it = manifests.find(v);
  while (it != manifests.end()) {
    chain.push_back(it->first);
    if (!it->second || it->second->kind() != Manifest::KIND_DELTA) break;
    it = manifests.find(it->second->parent_version());  // strictly decreasing (validated)
  }
  return chain;
}

// Pinned versions and every version their chains need.
std::set<uint64_t> PinnedChains(const ManifestMap& manifests, const std::vector<uint64_t>& pins) {
  std::set<uint64_t> out;
  for (uint64_t p : pins) {
    for (uint64_t v : ChainOf(manifests, p)) out.insert(v);
  }
  return out;
}

// "1, 2, 5" (at most `max` numbers, then how many more), or "none".
std::string VersionListText(const std::vector<uint64_t>& versions, size_t max = 20) {
  if (versions.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < versions.size() && i < max; ++i) {
    out += (i ? ", " : "") + std::to_string(versions[i]);
  }
  if (versions.size() > max) out += " and " + std::to_string(versions.size() - max) + " more";
  return out;
}

Status NotCommittedError(const std::string& root, uint64_t version,
                         const std::vector<uint64_t>& versions) {
  return NotFoundError("version " + std::to_string(version) + " is not committed under " + root +
                       " (versions there: " + VersionListText(versions) + ")");
}

constexpr char kPinsDir[] = "pins";

}  // namespace

StatusOr<std::vector<uint64_t>> ListPins(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return IoError(ec, "stat", root);
    return NotFoundError("model root " + root + " does not exist");
  }
  const std::string dir = JoinPath(root, kPinsDir);
  std::vector<uint64_t> pins;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return pins;
    return IoError(ec, "list", dir);
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (auto v = ParseVersionDirName(it->path().filename().string())) pins.push_back(*v);
  }
  if (ec) return IoError(ec, "list", dir);
  std::sort(pins.begin(), pins.end());
  return pins;
}

Status PinVersion(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  if (!std::binary_search(versions.begin(), versions.end(), version)) {
    return NotCommittedError(root, version, versions);
  }
  const std::string dir = JoinPath(root, kPinsDir);
  std::error_code ec;
  if (fs::create_directory(dir, ec)) {
    RETURN_IF_ERROR(SyncDir(root));
  } else if (ec) {
    return IoError(ec, "create directory", dir);
  }
  const std::string path = JoinPath(dir, VersionDirName(version));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) return IoError(errno, "create", path);
  if (::close(fd.Release()) != 0) return IoError(errno, "close", path);
  return SyncDir(dir);
}

Status UnpinVersion(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
  const std::string dir = JoinPath(root, kPinsDir);
  const std::string path = JoinPath(dir, VersionDirName(version));
  if (::unlink(path.c_str()) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
      return NotFoundError("version " + std::to_string(version) + " is not pinned under " + root +
                           " (pinned: " + VersionListText(pins) + ")");
    }
    return IoError(err, "remove", path);
  }
  return SyncDir(dir);
}

Status DeleteVersion(const std::string& root, uint64_t version) {
  std::string doomed;
  {
    ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
    ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
    if (!std::binary_search(versions.begin(), versions.end(), version)) {
      return NotCommittedError(root, version, versions);
    }
    const std::string v = "version " + std::to_string(version);
    ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
    if (std::binary_search(pins.begin(), pins.end(), version)) {
      return FailedPreconditionError(v + " is pinned; unpin it before deleting it");
    }
    const ManifestMap manifests = ReadManifests(root, versions);
    std::vector<uint64_t> dependents, unreadable;
    for (const auto& [other, m] : manifests) {
      if (other <= version) continue;  // only newer versions can be deltas of it
      if (!m) {
        unreadable.push_back(other);
        continue;
      }
      const std::vector<uint64_t> chain = ChainOf(manifests, other);
      if (std::find(chain.begin(), chain.end(), version) != chain.end()) {
        dependents.push_back(other);
      }
    }
    if (!dependents.empty()) {
      std::vector<uint64_t> pinned_dependents;
      for (uint64_t d : dependents) {
        if (std::binary_search(pins.begin(), pins.end(), d)) pinned_dependents.push_back(d);
      }
      return FailedPreconditionError(
          v + " is needed by the chain of version(s) " + VersionListText(dependents) +
          (pinned_dependents.empty() ? ""
                                     : " (pinned: " + VersionListText(pinned_dependents) + ")") +
          "; delete those first");
    }
    if (!unreadable.empty()) {
      return FailedPreconditionError(
          v + " may be needed by newer version(s) " + VersionListText(unreadable) +
          " whose manifest cannot be read; repair or delete those first");
    }
    const std::string from = JoinPath(root, VersionDirName(version));
    doomed = internal::HiddenDirPath(root, version, kDeletingTag);
    if (const int err = RenameNoReplace(from, doomed); err != 0) {
      return IoError(err, "rename " + from + " to", doomed);
    }
    RETURN_IF_ERROR(SyncDir(root));
  }
  std::error_code ec;
  fs::remove_all(doomed, ec);
  if (ec) {
    return IoError(ec, "remove", doomed)
        .WithContext("version " + std::to_string(version) +
                     " is deleted but its files are not all removed (retention finishes it)");
  }
  return OkStatus();
}

Status ApplyRetention(const std::string& root, int keep_full) {
  RetentionOptions options;
  options.keep_full = keep_full;
  return ApplyRetention(root, options);
}

Status ApplyRetention(const std::string& root, const RetentionOptions& options) {
  if (options.keep_full < 1) return InvalidArgumentError("retention must keep at least 1 full");
  // Held while deciding and renaming, so that a pin taken meanwhile by another
  // process is honoured; the slow removal happens after it is released.
  std::optional<RootLock> lock;
  {
    ASSIGN_OR_RETURN(RootLock l, RootLock::Acquire(root));
    lock.emplace(std::move(l));
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
  const ManifestMap manifests = ReadManifests(root, versions);
  for (const auto& [v, m] : manifests) {
    if (!m) LOG(WARNING) << "retention under " << root << " cannot read version " << v;
  }
  std::vector<uint64_t> fulls;
  for (const auto& [v, m] : manifests) {
    if (m && m->kind() == Manifest::KIND_FULL) fulls.push_back(v);
  }
  std::sort(fulls.rbegin(), fulls.rend());
  if (fulls.size() > static_cast<size_t>(options.keep_full)) fulls.resize(options.keep_full);
  const std::set<uint64_t> kept_fulls(fulls.begin(), fulls.end());

  std::vector<uint64_t> doomed;
  if (!kept_fulls.empty()) {
    const uint64_t oldest_kept = *kept_fulls.begin();
    for (const auto& [v, m] : manifests) {
      bool keep = false;
      if (!m) {
        keep = v > oldest_kept;
      } else if (m->kind() == Manifest::KIND_FULL) {
        keep = kept_fulls.count(v) > 0;
      } else {
        // Follow the parents down to a full version.
        uint64_t p = m->parent_version();
        while (true) {
          auto it = manifests.find(p);
          if (it == manifests.end()) break;  // broken chain: useless
          if (!it->second) {
            keep = v > oldest_kept;  // unknown: be conservative
            break;
          }
          if (it->second->kind() == Manifest::KIND_FULL) {
            keep = kept_fulls.count(p) > 0;
            break;
          }
          p = it->second->parent_version();  // strictly decreasing (validated)
        }
      }
      if (!keep) doomed.push_back(v);
    }
  }
  const std::set<uint64_t> pinned_chains = PinnedChains(manifests, pins);
  std::erase_if(doomed, [&](uint64_t v) { return pinned_chains.count(v) > 0; });

  Status first_error;
  auto note = [&](Status s) {
    if (!s.ok()) {
      LOG(WARNING) << "retention under " << root << ": " << s;
      if (first_error.ok()) first_error = s;
    }
  };
  // Newest first: a delta disappears before its parent.
  std::sort(doomed.rbegin(), doomed.rend());
  std::vector<std::string> to_remove;
  for (uint64_t v : doomed) {
    const std::string from = JoinPath(root, VersionDirName(v));
    const std::string to = internal::HiddenDirPath(root, v, kDeletingTag);
    if (const int err = RenameNoReplace(from, to); err != 0) {
      note(IoError(err, "rename " + from + " to", to));
      break;  // keep the order guarantee: stop before deleting any parent
    }
    to_remove.push_back(to);
  }
  if (!to_remove.empty()) note(SyncDir(root));
  lock.reset();

  const uint64_t newest = versions.empty() ? 0 : versions.back();
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (fs::directory_iterator it(root, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto t = ParseTempDirName(it->path().filename().string());
    if (!t) continue;
    const std::string path = it->path().string();
    if (std::find(to_remove.begin(), to_remove.end(), path) != to_remove.end()) continue;
    bool stale = t->deleting || t->version <= newest;
    if (!stale) {
      std::error_code tec;
      const auto mtime = fs::last_write_time(it->path(), tec);
      stale = !tec && now - mtime > options.stale_temp_age;
    }
    if (stale) to_remove.push_back(path);
  }
  if (ec) note(IoError(ec, "list", root));
  for (const std::string& path : to_remove) {
    std::error_code rec;
    fs::remove_all(path, rec);
    if (rec) note(IoError(rec, "remove", path));
  }
  return first_error;
}

}  // namespace eddy::model_store
