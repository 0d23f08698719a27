#include <algorithm>
#include <fstream>
#include <iterator>

#include "model_store/format.h"
#include "model_store/version_dir.h"
#include "serving/version_source.h"

namespace eddy::serving {
namespace {

// Versions read in place from a root directory.
class LocalSource : public VersionSource {
 public:
  LocalSource(std::string root, std::chrono::milliseconds scan_interval, Waker& waker)
      : root_(std::move(root)), scan_interval_(scan_interval), waker_(waker) {}

  StatusOr<std::vector<VersionEntry>> List(uint64_t after) override {
    ASSIGN_OR_RETURN(std::vector<uint64_t> versions, model_store::ListVersions(root_));
    std::vector<VersionEntry> out;
    for (uint64_t v : versions) {
      if (v <= after) continue;
      const std::string path = root_ + "/" + model_store::VersionDirName(v) + "/manifest.pb";
      std::ifstream in(path, std::ios::binary);
      VersionEntry e;
      e.manifest_bytes.assign(std::istreambuf_iterator<char>(in), {});
      if (!in.good() && !in.eof()) continue;
      if (!e.manifest.ParseFromString(e.manifest_bytes)) {
        // Handed to Follow anyway, which refuses it with the reader's error.
        e.manifest.set_version(v);
      }
      e.manifest.set_version(v);
      out.push_back(std::move(e));
    }
    return out;
  }

  StatusOr<std::vector<VersionEntry>> Watch(uint64_t after,
                                            std::chrono::milliseconds timeout) override {
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
      StatusOr<std::vector<VersionEntry>> got = List(after);
      if (!got.ok() || !got->empty()) return got;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) return got;
      if (waker_.WaitFor(std::min(left, scan_interval_))) return std::vector<VersionEntry>();
    }
  }

  StatusOr<std::string> Fetch(const VersionEntry& entry) override {
    return root_ + "/" + model_store::VersionDirName(entry.manifest.version());
  }

 private:
  const std::string root_;
  const std::chrono::milliseconds scan_interval_;
  Waker& waker_;  // the replica's loader waker
};

}  // namespace

std::unique_ptr<VersionSource> MakeLocalSource(std::string root,
                                               std::chrono::milliseconds scan_interval,
                                               Waker& waker) {
  return std::make_unique<LocalSource>(std::move(root), scan_interval, waker);
}

}  // namespace eddy::serving
