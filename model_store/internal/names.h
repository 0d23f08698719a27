// Internal to model_store: names inside a root directory besides the public
// VersionDirName: parsing version and hidden directory names, hidden
// (temporary or being-deleted) directory paths, data file names, and a rename
// that never replaces its target. Thread-safety: thread-safe.
#ifndef EDDY_MODEL_STORE_INTERNAL_NAMES_H_
#define EDDY_MODEL_STORE_INTERNAL_NAMES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace eddy::model_store::internal {

// "v000000000042" -> 42; nullopt for anything not in canonical form.
std::optional<uint64_t> ParseVersionDirName(std::string_view name);

inline constexpr std::string_view kTempTag = ".tmp-";
inline constexpr std::string_view kDeletingTag = ".del-";

struct TempDirName {
  uint64_t version;
  bool deleting;  // a committed version being removed by retention
};

// ".v000000000042.tmp-<hex>" / ".v000000000042.del-<hex>".
std::optional<TempDirName> ParseTempDirName(std::string_view name);

// `<root>/.v<version><tag><random hex>`: a hidden directory (kTempTag: a
// version being written; kDeletingTag: one being removed).
std::string HiddenDirPath(const std::string& root, uint64_t version, std::string_view tag);

// Data file name: table name with bytes outside [A-Za-z0-9_-] as %XX, then the shard.
std::string DataFileName(std::string_view table, uint32_t shard);

// Renames without replacing an existing target (a committed version is never
// overwritten); returns 0 or an errno. Falls back to rename(2) where renameat2
// is unsupported; the target is then checked first.
int RenameNoReplace(const std::string& from, const std::string& to);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_NAMES_H_
