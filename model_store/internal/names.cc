#include "model_store/internal/names.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <random>

#include "model_store/internal/file_io.h"
#include "model_store/version_dir.h"

namespace eddy::model_store::internal {
namespace {

std::optional<uint64_t> ParseVersionDigits(std::string_view digits) {
  if (digits.size() < 12) return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size() || v == 0) return std::nullopt;
  return v;
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace

std::optional<uint64_t> ParseVersionDirName(std::string_view name) {
  if (name.empty() || name.front() != 'v') return std::nullopt;
  auto v = ParseVersionDigits(name.substr(1));
  if (!v || VersionDirName(*v) != name) return std::nullopt;
  return v;
}

std::optional<TempDirName> ParseTempDirName(std::string_view name) {
  if (name.size() < 2 || name.substr(0, 2) != ".v") return std::nullopt;
  const size_t dot = name.find('.', 2);
  if (dot == std::string_view::npos) return std::nullopt;
  auto v = ParseVersionDigits(name.substr(2, dot - 2));
  if (!v) return std::nullopt;
  const std::string_view rest = name.substr(dot);
  if (rest.size() <= kTempTag.size()) return std::nullopt;
  if (rest.substr(0, kTempTag.size()) == kTempTag) return TempDirName{*v, false};
  if (rest.substr(0, kDeletingTag.size()) == kDeletingTag) return TempDirName{*v, true};
  return std::nullopt;
}

std::string HiddenDirPath(const std::string& root, uint64_t version, std::string_view tag) {
  return JoinPath(root, "." + VersionDirName(version) + std::string(tag) + RandomSuffix());
}

std::string DataFileName(std::string_view table, uint32_t shard) {
  std::string out;
  for (unsigned char c : table) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '-') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    }
  }
  char tail[32];
  std::snprintf(tail, sizeof(tail), ".s%05u.eddy", shard);
  return out + tail;
}

int RenameNoReplace(const std::string& from, const std::string& to) {
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
#endif
  struct stat st;
  if (::lstat(to.c_str(), &st) == 0) return EEXIST;
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

}  // namespace eddy::model_store::internal
