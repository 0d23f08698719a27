// The replica's loader thread: follows the chain of versions of its source,
// builds each new version on a copy of the previous one and swaps it in;
// loads pinned versions on request.
#include <glog/logging.h>

#include <algorithm>
#include <iterator>

#include "model_store/format.h"
#include "model_store/materialize.h"
#include "model_store/version_reader.h"
#include "serving/replica.h"
#include "serving/version_source.h"

namespace eddy::serving {
namespace {

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

void Replica::LoaderMain() {
  std::unique_ptr<VersionSource> source;
  if (!options_.model_dir.empty()) {
    source = MakeLocalSource(options_.model_dir, options_.scan_interval, loader_waker_);
  } else {
    StatusOr<std::unique_ptr<VersionSource>> remote =
        ConnectRemoteSource(context_, options_, loader_waker_, stop_);
    if (!remote.ok()) {
      Refuse(0, remote.status());
      return;
    }
    source = std::move(remote).value();
  }
  uint64_t seen = 0;  // newest version examined (loaded or refused)
  bool first = true;
  int failures = 0;
  while (!stopping()) {
    std::deque<PendingPin> pins;
    {
      MutexLock lock(&mu_);
      pins.swap(pins_);
    }
    for (PendingPin& pin : pins) {
      Status s = LoadPinned(*source, pin.version);
      if (!s.ok()) LOG(ERROR) << "replica: cannot pin version " << pin.version << ": " << s;
      {
        MutexLock lock(&mu_);
        done_.push_back({std::move(pin.envelope), pin.request_id, s});
      }
      io_waker_.Notify();
    }
    StatusOr<std::vector<VersionEntry>> got =
        first ? source->List(0) : source->Watch(seen, options_.watch_timeout);
    if (!got.ok()) {
      if (stopping()) break;
      if (++failures <= 5 || failures % 100 == 0) {
        LOG(WARNING) << "replica: cannot list versions (" << failures
                     << " failures): " << got.status();
      }
      // Back off, but wake at once for Stop or a pin request.
      loader_waker_.WaitFor(std::chrono::milliseconds(200));
      continue;
    }
    failures = 0;
    std::vector<VersionEntry> entries = std::move(got).value();
    if (first) {
      first = false;
      // Start from the newest full version; older versions are not needed.
      auto full = std::find_if(entries.rbegin(), entries.rend(), [](const VersionEntry& e) {
        return e.manifest.kind() == proto::Manifest::KIND_FULL;
      });
      if (full != entries.rend()) {
        entries.erase(entries.begin(), std::prev(full.base()));
      } else if (!entries.empty()) {
        LOG(WARNING) << "replica: no full version yet; waiting for one";
        seen = entries.back().manifest.version();
        continue;
      }
    }
    for (const VersionEntry& e : entries) {
      if (stopping()) break;
      const uint64_t v = e.manifest.version();
      if (v <= seen) continue;
      seen = v;
      Status s = Follow(*source, e);
      if (!s.ok()) Refuse(v, s);
    }
  }
}

Status Replica::Follow(VersionSource& source, const VersionEntry& entry) {
  const proto::Manifest& m = entry.manifest;
  const uint64_t v = m.version();
  if (m.format_version() > model_store::kModelFormatVersion) {
    broken_chain_ = true;
    return FailedPreconditionError("written by model format " + std::to_string(m.format_version()) +
                                   ", this replica reads up to " +
                                   std::to_string(model_store::kModelFormatVersion));
  }
  const bool full = m.kind() == proto::Manifest::KIND_FULL;
  if (!full) {
    if (newest_ == nullptr || broken_chain_) {
      return FailedPreconditionError("delta of version " + std::to_string(m.parent_version()) +
                                     " but no intact chain to apply it to; waiting for the next "
                                     "full version");
    }
    if (m.parent_version() != newest_->version()) {
      broken_chain_ = true;
      return FailedPreconditionError(
          "version gap: delta of version " + std::to_string(m.parent_version()) +
          " but the replica is at version " + std::to_string(newest_->version()) +
          " (a delta is missing); waiting for the next full version");
    }
  }
  const auto start = SteadyClock::now();
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(std::string dir, source.Fetch(entry));
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(dir));
    Status verified = reader.Verify();
    if (!verified.ok()) {
      source.Discard(v);
      return verified;
    }
    // Build on a copy: the version being served stays untouched.
    model_store::MaterializedModel model;
    if (!full) model = newest_->model();
    RETURN_IF_ERROR(
        model_store::ApplyVersion(reader, &model, {.verify_checksums = false, .include = {}}));
    ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                     LoadedModel::Create(std::move(model)));
    newest_ = loaded;
    return OkStatus();
  }();
  if (!s.ok()) {
    broken_chain_ = true;
    return s;
  }
  broken_chain_ = false;
  if (full) source.Prune(v);
  Publish(newest_, /*newest=*/true, Seconds(SteadyClock::now() - start));
  return OkStatus();
}

Status Replica::LoadPinned(VersionSource& source, uint64_t version) {
  {
    MutexLock lock(&mu_);
    auto it = cache_.find(version);
    if (it != cache_.end()) {
      pinned_ = version;
      serving_ = it->second;
      changed_.NotifyAll();
      return OkStatus();
    }
  }
  const auto start = SteadyClock::now();
  ASSIGN_OR_RETURN(std::vector<VersionEntry> all, source.List(0));
  std::map<uint64_t, const VersionEntry*> by_version;
  for (const VersionEntry& e : all) by_version[e.manifest.version()] = &e;
  std::vector<const VersionEntry*> chain;
  for (uint64_t v = version;;) {
    auto it = by_version.find(v);
    if (it == by_version.end()) {
      return NotFoundError(
          "version " + std::to_string(v) +
          (v == version ? " is not available" : " (in the chain) is not available"));
    }
    chain.insert(chain.begin(), it->second);
    if (it->second->manifest.kind() == proto::Manifest::KIND_FULL) break;
    v = it->second->manifest.parent_version();
    if (v == 0 || chain.size() > 100000) return DataLossError("broken chain");
  }
  model_store::MaterializedModel model;
  for (const VersionEntry* e : chain) {
    ASSIGN_OR_RETURN(std::string dir, source.Fetch(*e));
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(dir));
    Status verified = reader.Verify();
    if (!verified.ok()) {
      source.Discard(e->manifest.version());
      return verified;
    }
    RETURN_IF_ERROR(
        model_store::ApplyVersion(reader, &model, {.verify_checksums = false, .include = {}}));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                   LoadedModel::Create(std::move(model)));
  LOG(INFO) << "replica: loaded version " << version << " to pin it: " << loaded->rows()
            << " rows in " << Seconds(SteadyClock::now() - start) << " s";
  MutexLock lock(&mu_);
  cache_[version] = loaded;
  pinned_ = version;
  serving_ = loaded;
  EvictLocked();
  changed_.NotifyAll();
  return OkStatus();
}

void Replica::Publish(std::shared_ptr<const LoadedModel> model, bool newest, double seconds) {
  const uint64_t v = model->version();
  const proto::Manifest& m = model->model().manifest;
  LOG(INFO) << "replica: loaded version " << v
            << (m.kind() == proto::Manifest::KIND_FULL
                    ? std::string(" (full)")
                    : " (delta of " + std::to_string(m.parent_version()) + ")")
            << ": " << model->rows() << " rows in " << seconds << " s";
  MutexLock lock(&mu_);
  cache_[v] = model;
  if (newest) newest_version_ = v;
  if (pinned_ == 0) serving_ = model;
  counters_.set_versions_loaded(counters_.versions_loaded() + 1);
  counters_.set_last_load_seconds(seconds);
  EvictLocked();
  changed_.NotifyAll();
}

void Replica::Refuse(uint64_t version, const Status& status) {
  LOG(ERROR) << "replica: refused version " << version << ": " << status
             << " (still serving the last good version)";
  MutexLock lock(&mu_);
  counters_.set_versions_refused(counters_.versions_refused() + 1);
  counters_.set_last_error("version " + std::to_string(version) + ": " + status.ToString());
  changed_.NotifyAll();
}

void Replica::EvictLocked() {
  while (cache_.size() > static_cast<size_t>(options_.max_versions_cached)) {
    auto victim = cache_.end();
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      const uint64_t v = it->first;
      if (v == newest_version_ || v == pinned_ || it->second == serving_) continue;
      victim = it;
      break;
    }
    if (victim == cache_.end()) return;
    cache_.erase(victim);
  }
}

}  // namespace eddy::serving
