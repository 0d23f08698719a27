// The replica's loader thread: follows the chain of versions of its source,
// applying each to the back copy of the newest model, publishing it, then
// applying it to the other copy once no prediction reads it (left-right);
// loads pinned versions on request into immutable models.
#include <glog/logging.h>

#include <algorithm>
#include <iterator>
#include <utility>

#include "model_store/format.h"
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
      if (!s.ok() && !stopping()) Refuse(v, s);
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
    if (front_ == nullptr || broken_chain_) {
      return FailedPreconditionError("delta of version " + std::to_string(m.parent_version()) +
                                     " but no intact chain to apply it to; waiting for the next "
                                     "full version");
    }
    if (m.parent_version() != front_->model.version()) {
      broken_chain_ = true;
      return FailedPreconditionError(
          "version gap: delta of version " + std::to_string(m.parent_version()) +
          " but the replica is at version " + std::to_string(front_->model.version()) +
          " (a delta is missing); waiting for the next full version");
    }
  }
  const auto start = SteadyClock::now();
  StatusOr<std::string> dir = source.Fetch(entry);
  StatusOr<model_store::VersionReader> reader =
      dir.ok() ? model_store::VersionReader::Open(*dir) : dir.status();
  Status s = reader.status();
  if (s.ok()) {
    s = reader->Verify();
    if (!s.ok()) source.Discard(v);
  }
  if (s.ok()) s = full ? LoadFull(*reader, start) : ApplyDelta(*reader, start);
  if (!s.ok()) {
    broken_chain_ = true;
    return s;
  }
  broken_chain_ = false;
  if (full) source.Prune(v);
  if (!full) CatchUpBack(*reader);
  UpdateMemory();
  return OkStatus();
}

namespace {

// A view of `copy` counted by its ViewCounter.
StatusOr<std::shared_ptr<const LoadedModel>> ViewOf(const std::shared_ptr<ModelCopy>& copy) {
  return LoadedModel::Create(std::shared_ptr<const ServingModel>(copy, &copy->model),
                             std::shared_ptr<ViewCounter>(copy, &copy->views));
}

}  // namespace

Status Replica::LoadFull(const model_store::VersionReader& reader, SteadyClock::time_point start) {
  back_.reset();  // no view reads it: its memory goes now
  auto fresh = std::make_shared<ModelCopy>();
  RETURN_IF_ERROR(ApplyServingVersion(reader, &fresh->model, {.verify_checksum = false}));
  ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> view, ViewOf(fresh));
  front_ = fresh;
  // The old front is not changed any more: predictions still reading it (or a
  // pin on it) keep it alive as it is.
  Publish(std::move(view), /*copy_if_pinned=*/false, Seconds(SteadyClock::now() - start));
  const auto copy_start = SteadyClock::now();
  auto back = std::make_shared<ModelCopy>();
  back->model = front_->model;  // reads only, as predictions do
  back_ = std::move(back);
  VLOG(1) << "replica: copied version " << reader.version() << " in "
          << Seconds(SteadyClock::now() - copy_start) << " s";
  return OkStatus();
}

Status Replica::ApplyDelta(const model_store::VersionReader& reader,
                           SteadyClock::time_point start) {
  const uint64_t parent = reader.manifest().parent_version();
  if (back_ != nullptr && !WaitNoViews(*back_)) return AbortedError("replica stopping");
  if (back_ == nullptr || back_->model.version() != parent) {
    LOG(WARNING) << "replica: rebuilding the second copy of version " << parent
                 << " from the first";
    auto back = std::make_shared<ModelCopy>();
    back->model = front_->model;
    back_ = std::move(back);
  }
  Status applied = ApplyServingVersion(reader, &back_->model, {.verify_checksum = false});
  StatusOr<std::shared_ptr<const LoadedModel>> view =
      applied.ok() ? ViewOf(back_) : StatusOr<std::shared_ptr<const LoadedModel>>(applied);
  if (!view.ok()) {
    back_.reset();  // partially updated or not servable; the front serves on
    return view.status();
  }
  std::swap(front_, back_);
  std::shared_ptr<const LoadedModel> old = Publish(
      std::move(view).value(), /*copy_if_pinned=*/true, Seconds(SteadyClock::now() - start));
  return OkStatus();  // `old` goes here: CatchUpBack waits for the other views of it
}

bool Replica::WaitNoViews(const ModelCopy& copy) {
  const auto start = SteadyClock::now();
  for (int round = 1; !copy.views.WaitNone(std::chrono::seconds(1)); ++round) {
    if (stopping()) return false;
    if (round <= 5 || round % 60 == 0) {
      LOG(WARNING) << "replica: " << copy.views.count() << " view(s) of version "
                   << copy.model.version() << " still held after "
                   << Seconds(SteadyClock::now() - start)
                   << " s; the next delta waits for them (Replica::serving() callers?)";
    }
  }
  return true;
}

void Replica::CatchUpBack(const model_store::VersionReader& reader) {
  if (back_ == nullptr) return;
  if (!WaitNoViews(*back_)) return;  // stopping: it is rebuilt if ever needed
  const auto start = SteadyClock::now();
  Status s = back_->model.version() == reader.manifest().parent_version()
                 ? ApplyServingVersion(reader, &back_->model, {.verify_checksum = false})
                 : FailedPreconditionError("the second copy is not at the parent version");
  if (!s.ok()) {
    LOG(WARNING) << "replica: cannot apply version " << reader.version()
                 << " to the second copy (rebuilt from the first at the next delta): " << s;
    back_.reset();
    return;
  }
  VLOG(1) << "replica: applied version " << reader.version() << " to the second copy in "
          << Seconds(SteadyClock::now() - start) << " s";
}

Status Replica::LoadPinned(VersionSource& source, uint64_t version) {
  {
    MutexLock lock(&mu_);
    if (std::shared_ptr<const LoadedModel> held = FindLocked(version)) {
      pinned_ = version;
      serving_ = std::move(held);
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
  auto model = std::make_shared<ServingModel>();
  for (const VersionEntry* e : chain) {
    ASSIGN_OR_RETURN(std::string dir, source.Fetch(*e));
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(dir));
    Status verified = reader.Verify();
    if (!verified.ok()) {
      source.Discard(e->manifest.version());
      return verified;
    }
    RETURN_IF_ERROR(ApplyServingVersion(reader, model.get(), {.verify_checksum = false}));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                   LoadedModel::Create(std::shared_ptr<const ServingModel>(std::move(model))));
  LOG(INFO) << "replica: loaded version " << version << " to pin it: " << loaded->rows()
            << " rows in " << Seconds(SteadyClock::now() - start) << " s";
  {
    MutexLock lock(&mu_);
    cache_[version] = loaded;
    pinned_ = version;
    serving_ = loaded;
    EvictLocked();
    changed_.NotifyAll();
  }
  UpdateMemory();
  return OkStatus();
}

std::shared_ptr<const LoadedModel> Replica::Publish(std::shared_ptr<const LoadedModel> model,
                                                    bool copy_if_pinned, double seconds) {
  const uint64_t v = model->version();
  const proto::Manifest& m = model->manifest();
  std::shared_ptr<const LoadedModel> old;
  bool old_pinned = false;
  {
    MutexLock lock(&mu_);
    old = std::exchange(newest_, model);
    newest_version_ = v;
    if (pinned_ == 0) serving_ = model;
    old_pinned = old != nullptr && serving_ == old;
    if (old_pinned && !copy_if_pinned) cache_[old->version()] = old;
    counters_.set_versions_loaded(counters_.versions_loaded() + 1);
    counters_.set_last_load_seconds(seconds);
    EvictLocked();
    changed_.NotifyAll();
  }
  // Logged once published: a prediction made after this line sees the version
  // (unless a pin holds another one).
  LOG(INFO) << "replica: loaded version " << v
            << (m.kind() == proto::Manifest::KIND_FULL
                    ? std::string(" (full)")
                    : " (delta of " + std::to_string(m.parent_version()) + ")")
            << ": " << model->rows() << " rows in " << seconds << " s";
  if (old_pinned && copy_if_pinned) {
    // The pinned version's copy is about to change: pin an immutable copy of it.
    auto copy = std::make_shared<const ServingModel>(old->model());
    StatusOr<std::shared_ptr<const LoadedModel>> view = LoadedModel::Create(copy);
    CHECK(view.ok()) << view.status();  // the same tables were servable a moment ago
    MutexLock lock(&mu_);
    if (serving_ == old) {
      serving_ = *view;
      cache_[old->version()] = *view;
      EvictLocked();
    }
  }
  return old;
}

void Replica::UpdateMemory() {
  uint64_t bytes = 0;
  for (const ModelCopy* c : {front_.get(), back_.get()}) {
    if (c != nullptr) bytes += c->model.memory_bytes();
  }
  MutexLock lock(&mu_);
  for (const auto& [v, m] : cache_) bytes += m->model().memory_bytes();
  model_bytes_ = bytes;
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
      if (it->first == pinned_ || it->second == serving_) continue;
      victim = it;
      break;
    }
    if (victim == cache_.end()) return;
    cache_.erase(victim);
  }
}

}  // namespace eddy::serving
