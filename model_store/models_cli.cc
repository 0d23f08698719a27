#include "model_store/models_cli.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iterator>

#include "model_store/internal/cli_text.h"
#include "model_store/internal/models_cli_commands.h"
#include "model_store/retention.h"
#include "model_store/serving_export.h"
#include "model_store/snapshot_request.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {
namespace internal {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    R"(eddy_models: inspect and manage the Eddy model versions under a root directory
(the on-disk format is docs/model_format.md).

Usage: eddy_models <command> --model_dir=DIR [flags]

Commands:
  list                  one line per version: kind, parent, creation time (UTC), type and
                        encoding, rows per table (a delta: +changed/-tombstones), bytes,
                        pin, stream positions, metrics. --json: a JSON array.
  show    --version=N   the manifest of version N in detail: chain, tables, files,
                        positions, metrics, attributes. --json: the manifest as JSON.
  verify  --version=N   checks the size and CRC32C of every file of every version in the
                        chain of N. --materialize also decodes and applies the chain.
  pin     --version=N   protects N and the versions its chain needs from prune and delete.
  unpin   --version=N   removes the pin of N.
  delete  --version=N   deletes N; refused while N is pinned or another version's chain
                        needs it.
  export  --version=N --to=DIR [--encoding=float32|fp16|int8] [--delta] [--threads=T]
                        writes N under DIR as a serving version (no optimizer state) with
                        the same number, tables, positions, metrics and attributes.
  prune   --keep_full=K keeps the K newest full versions, the deltas built on them and
                        every pinned version with its chain; deletes the rest.
  snapshot --scheduler=tcp://HOST:PORT
                        asks a running job's scheduler for a model version now (no
                        --model_dir needed); prints the version number it will commit.
  help                  this text.

Flags:
)";

constexpr char kUsageTail[] = R"(
Exit status: 0 on success, 1 when the command fails (the message says why and what to
do), 2 on a usage error.

Examples:
  eddy_models list --model_dir=/data/ckpt
  eddy_models pin --model_dir=/data/ckpt --version=42
  eddy_models export --model_dir=/data/ckpt --version=42 --to=/data/serving --encoding=fp16
  eddy_models prune --model_dir=/data/ckpt --keep_full=2
)";

}  // namespace

// The committed versions, or a failure that says how to fix --model_dir.
StatusOr<std::vector<uint64_t>> Versions(const std::string& root) {
  auto v = ListVersions(root);
  if (!v.ok() && v.status().code() == StatusCode::kNotFound) {
    return NotFoundError(v.status().message() + "; check --model_dir");
  }
  return v;
}

// Checks that --version names a committed version.
CliResult RequireVersion(const ModelsCliOptions& o, const std::string& command,
                         const std::string& root) {
  auto versions = Versions(root);
  if (!versions.ok()) return CommandError(versions.status());
  const uint64_t v = o.version;
  if (v == 0) {
    return UsageError(command + " needs --version=N; versions under " + root + ": " +
                      VersionList(*versions));
  }
  if (!std::binary_search(versions->begin(), versions->end(), v)) {
    return CliFailure{kModelsExitError, "version " + std::to_string(v) +
                                            " is not committed under " + root +
                                            "; versions there: " + VersionList(*versions) +
                                            " (see eddy_models list --model_dir=" + root + ")"};
  }
  return std::nullopt;
}

namespace {

CliResult Pin(const ModelsCliOptions& o, const std::string& root, bool pin) {
  const std::string command = pin ? "pin" : "unpin";
  if (pin) {
    if (auto f = RequireVersion(o, command, root)) return f;
  } else if (o.version == 0) {
    auto pins = ListPins(root);
    return UsageError("unpin needs --version=N; pinned: " +
                      (pins.ok() ? VersionList(*pins) : pins.status().message()));
  }
  const uint64_t v = o.version;
  const Status s = pin ? PinVersion(root, v) : UnpinVersion(root, v);
  if (!s.ok()) return CommandError(s);
  auto pins = ListPins(root);
  std::printf("%s version %llu; pinned now: %s\n", pin ? "pinned" : "unpinned",
              static_cast<unsigned long long>(v), pins.ok() ? VersionList(*pins).c_str() : "?");
  return std::nullopt;
}

CliResult Delete(const ModelsCliOptions& o, const std::string& root) {
  if (auto f = RequireVersion(o, "delete", root)) return f;
  const uint64_t v = o.version;
  const Status s = DeleteVersion(root, v);
  if (!s.ok()) return CommandError(s);
  std::printf("deleted version %llu\n", static_cast<unsigned long long>(v));
  return std::nullopt;
}

CliResult Export(const ModelsCliOptions& o, const std::string& root) {
  if (auto f = RequireVersion(o, "export", root)) return f;
  if (o.to.empty()) return UsageError("export needs --to=DIR, the serving root to write to");
  auto encoding = ParseEncoding(o.encoding);
  if (!encoding.ok()) return UsageError(encoding.status().message());
  if (o.threads < 1) return UsageError("--threads must be >= 1");
  std::error_code ec;
  if (fs::equivalent(root, o.to, ec) ||
      fs::path(o.to).lexically_normal() == fs::path(root).lexically_normal()) {
    return UsageError("--to must differ from --model_dir (a root holds one kind of version)");
  }
  ExportOptions options;
  options.delta = o.delta;
  options.threads = o.threads;
  const uint64_t v = o.version;
  const auto start = std::chrono::steady_clock::now();
  const Status s = ExportForServing(root, v, o.to, *encoding, options);
  if (!s.ok()) return CommandError(s);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto r = VersionReader::Open(o.to + "/" + VersionDirName(v));
  uint64_t bytes = 0;
  if (r.ok()) {
    for (const auto& f : r->manifest().files()) bytes += f.bytes();
  }
  std::printf("exported version %llu to %s as a serving %s (%s): %s in %.2f s\n",
              static_cast<unsigned long long>(v), (o.to + "/" + VersionDirName(v)).c_str(),
              o.delta ? "delta" : "full version", LongEncoding(*encoding).c_str(),
              Bytes(bytes).c_str(), secs);
  return std::nullopt;
}

CliResult Prune(const ModelsCliOptions& o, const std::string& root) {
  if (o.keep_full < 1) {
    return UsageError(
        "prune needs --keep_full=K (K >= 1): the number of newest full versions "
        "to keep");
  }
  auto before = Versions(root);
  if (!before.ok()) return CommandError(before.status());
  const Status s = ApplyRetention(root, o.keep_full);
  auto after = ListVersions(root);
  if (!after.ok()) return CommandError(after.status());
  std::vector<uint64_t> removed;
  std::set_difference(before->begin(), before->end(), after->begin(), after->end(),
                      std::back_inserter(removed));
  auto pins = ListPins(root);
  std::printf("removed: %s\nkept: %s\npinned: %s\n", VersionList(removed).c_str(),
              VersionList(*after).c_str(), pins.ok() ? VersionList(*pins).c_str() : "?");
  if (!s.ok()) return CommandError(s);
  return std::nullopt;
}

// Asks a running job's scheduler for a version now.
CliResult Snapshot(const ModelsCliOptions& o) {
  if (o.scheduler.empty()) {
    return UsageError("snapshot needs --scheduler=tcp://host:port, the running job's scheduler");
  }
  auto version = RequestSnapshot(o.scheduler, std::chrono::milliseconds(o.timeout_ms));
  if (!version.ok()) {
    if (version.status().code() == StatusCode::kInvalidArgument) {
      return UsageError("--scheduler=" + version.status().message());
    }
    return CommandError(version.status());
  }
  std::printf("version %lld will be taken (watch the job's log or eddy_models list)\n",
              static_cast<long long>(*version));
  return std::nullopt;
}

}  // namespace
}  // namespace internal

std::optional<CliFailure> RunModelsCommand(const std::string& command, const ModelsCliOptions& o) {
  using internal::UsageError;
  if (command == "snapshot") return internal::Snapshot(o);
  if (o.model_dir.empty()) {
    return UsageError(command + " needs --model_dir=DIR, the model root directory");
  }
  std::string root = o.model_dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (command == "list") return internal::List(o, root);
  if (command == "show") return internal::Show(o, root);
  if (command == "verify") return internal::Verify(o, root);
  if (command == "pin") return internal::Pin(o, root, true);
  if (command == "unpin") return internal::Pin(o, root, false);
  if (command == "delete") return internal::Delete(o, root);
  if (command == "export") return internal::Export(o, root);
  if (command == "prune") return internal::Prune(o, root);
  return UsageError("unknown command '" + command +
                    "'; commands: list, show, verify, pin, unpin, delete, export, prune, snapshot, "
                    "help");
}

std::string_view ModelsUsageHead() { return internal::kUsage; }
std::string_view ModelsUsageTail() { return internal::kUsageTail; }

}  // namespace eddy::model_store
