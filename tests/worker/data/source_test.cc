#include "worker/data/source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace eddy::worker {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "eddy_source_test_XXXXXX").string();
    CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name, const std::string& content) const {
    std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string path() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

struct Read {
  std::string text;
  std::string origin;
  uint64_t line_number;
  bool truncated;
};

std::vector<Read> ReadAll(LineSource& source) {
  std::vector<Read> out;
  Line line;
  while (true) {
    StatusOr<bool> more = source.Next(&line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) return out;
    out.push_back(
        {std::string(line.text), std::string(line.origin), line.line_number, line.truncated});
  }
}

std::vector<std::string> Texts(const std::vector<Read>& reads) {
  std::vector<std::string> out;
  for (const auto& r : reads) out.push_back(r.text);
  return out;
}

TEST(FileListSourceTest, ReadsLinesWithOriginAndNumbers) {
  TempDir dir;
  std::string path = dir.File("a.txt", "first\nsecond\r\n\nlast without newline");
  auto source = FileListSource::Open({path});
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<Read> reads = ReadAll(**source);
  ASSERT_EQ(reads.size(), 4u);
  EXPECT_EQ(Texts(reads),
            (std::vector<std::string>{"first", "second\r", "", "last without newline"}));
  for (size_t i = 0; i < reads.size(); ++i) {
    EXPECT_EQ(reads[i].origin, path);
    EXPECT_EQ(reads[i].line_number, i + 1);
    EXPECT_FALSE(reads[i].truncated);
  }
}

TEST(FileListSourceTest, TinyReadsSplitLinesTheSame) {
  TempDir dir;
  std::string content;
  std::vector<std::string> expected;
  for (int i = 0; i < 200; ++i) {
    expected.push_back(std::string(i % 17, 'x') + std::to_string(i));
    content += expected.back() + "\n";
  }
  std::string path = dir.File("a.txt", content);
  for (size_t read_bytes : {1, 3, 16, 1 << 20}) {
    SourceOptions options;
    options.read_bytes = read_bytes;
    options.max_line_bytes = 64;
    auto source = FileListSource::Open({path}, options);
    ASSERT_TRUE(source.ok());
    EXPECT_EQ(Texts(ReadAll(**source)), expected) << read_bytes;
  }
}

TEST(FileListSourceTest, OverLongLinesAreTruncatedAndTheRestSkipped) {
  TempDir dir;
  std::string path =
      dir.File("a.txt", "ok1\n" + std::string(100, 'y') + "\nok2\n" + std::string(30, 'z'));
  for (size_t read_bytes : {1, 7, 4096}) {
    SourceOptions options;
    options.read_bytes = read_bytes;
    options.max_line_bytes = 10;
    auto source = FileListSource::Open({path}, options);
    ASSERT_TRUE(source.ok());
    std::vector<Read> reads = ReadAll(**source);
    ASSERT_EQ(reads.size(), 4u) << read_bytes;
    EXPECT_EQ(reads[0].text, "ok1");
    EXPECT_EQ(reads[1].text, std::string(11, 'y'));
    EXPECT_TRUE(reads[1].truncated);
    EXPECT_EQ(reads[2].text, "ok2");
    EXPECT_EQ(reads[2].line_number, 3u);
    EXPECT_FALSE(reads[2].truncated);
    EXPECT_EQ(reads[3].text, std::string(11, 'z'));
    EXPECT_TRUE(reads[3].truncated);
  }
}

TEST(FileListSourceTest, DirectoryInNameOrderSkippingUnreadableEntries) {
  TempDir dir;
  dir.File("b.txt", "b1\nb2\n");
  dir.File("a.txt", "a1\n");
  dir.File("c.txt", "");  // empty: no rows
  dir.File("d.txt", "d1");
  dir.File(".hidden", "h1\n");
  fs::create_directory(dir / "sub");
  dir.File("sub/inner.txt", "never\n");
  fs::create_symlink(dir / "missing-target", dir / "broken");
  auto source = FileListSource::Open({dir.path()});
  ASSERT_TRUE(source.ok()) << source.status();
  std::vector<Read> reads = ReadAll(**source);
  EXPECT_EQ(Texts(reads), (std::vector<std::string>{"a1", "b1", "b2", "d1"}));
  EXPECT_EQ(reads[1].origin, dir / "b.txt");
  EXPECT_EQ(reads[2].line_number, 2u);
  EXPECT_EQ((*source)->skipped_files(), 2u);  // "broken" and "sub"
}

TEST(FileListSourceTest, ListOfFilesInGivenOrderAndEmptyFiles) {
  TempDir dir;
  std::string empty = dir.File("empty.txt", "");
  std::string z = dir.File("z.txt", "z1\n");
  std::string a = dir.File("a.txt", "a1\n");
  auto source = FileListSource::Open({z, empty, a});
  ASSERT_TRUE(source.ok());
  EXPECT_EQ(Texts(ReadAll(**source)), (std::vector<std::string>{"z1", "a1"}));
  auto only_empty = FileListSource::Open({empty});
  ASSERT_TRUE(only_empty.ok());
  EXPECT_TRUE(ReadAll(**only_empty).empty());
}

TEST(FileListSourceTest, MissingTopLevelPathIsAnError) {
  TempDir dir;
  std::string a = dir.File("a.txt", "a1\n");
  auto source = FileListSource::Open({a, dir / "nope.txt"});
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), StatusCode::kNotFound);
  EXPECT_NE(source.status().message().find("nope.txt"), std::string::npos);
}

TEST(FileListSourceTest, FileRemovedBeforeItsTurnIsSkipped) {
  TempDir dir;
  std::string a = dir.File("a.txt", "a1\n");
  std::string b = dir.File("b.txt", "b1\n");
  auto source = FileListSource::Open({a, b});
  ASSERT_TRUE(source.ok());
  fs::remove(b);
  EXPECT_EQ(Texts(ReadAll(**source)), (std::vector<std::string>{"a1"}));
  EXPECT_EQ((*source)->skipped_files(), 1u);
}

// Collects lines from a source on a thread; the test waits for counts.
class Collector {
 public:
  explicit Collector(LineSource* source)
      : thread_([this, source] {
          Line line;
          while (true) {
            StatusOr<bool> more = source->Next(&line);
            std::lock_guard lock(mu_);
            if (!more.ok() || !*more) {
              status_ = more.ok() ? OkStatus() : more.status();
              ended_ = true;
              cv_.notify_all();
              return;
            }
            lines_.emplace_back(line.text);
            cv_.notify_all();
          }
        }) {}
  ~Collector() { thread_.join(); }

  std::vector<std::string> WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(
        cv_.wait_for(lock, std::chrono::seconds(10), [&] { return lines_.size() >= n || ended_; }));
    return lines_;
  }
  // Returns how long the source took to end, from now.
  std::chrono::milliseconds WaitEnd() {
    auto start = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(10), [&] { return ended_; }));
    EXPECT_TRUE(status_.ok()) << status_;
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 start);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool ended_ = false;
  Status status_;
  std::thread thread_;
};

void Append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

TEST(FollowFileSourceTest, ReadsAppendedLinesAndStopsPromptly) {
  TempDir dir;
  std::string path = dir.File("live.txt", "one\ntwo\n");
  SourceOptions options;
  options.follow_wait_ms = 60000;  // only inotify or the stop request can wake it
  auto source = FollowFileSource::Open(path, options);
  ASSERT_TRUE(source.ok()) << source.status();
  Collector collector(source->get());
  EXPECT_EQ(collector.WaitFor(2), (std::vector<std::string>{"one", "two"}));
  Append(path, "three\n");
  EXPECT_EQ(collector.WaitFor(3).size(), 3u);
  Append(path, "fo");  // a partial line is held back until its newline
  Append(path, "ur\nfive\n");
  EXPECT_EQ(collector.WaitFor(5),
            (std::vector<std::string>{"one", "two", "three", "four", "five"}));
  (*source)->RequestStop();
  EXPECT_LT(collector.WaitEnd().count(), 2000);
}

TEST(FollowFileSourceTest, TruncatedFileIsReadFromTheStart) {
  TempDir dir;
  std::string path = dir.File("live.txt", "a long first line\nanother long line\n");
  SourceOptions options;
  options.follow_wait_ms = 60000;
  auto source = FollowFileSource::Open(path, options);
  ASSERT_TRUE(source.ok());
  Collector collector(source->get());
  EXPECT_EQ(collector.WaitFor(2).size(), 2u);
  dir.File("live.txt", "new\n");  // truncates, then writes less than was read
  EXPECT_EQ(collector.WaitFor(3).back(), "new");
  (*source)->RequestStop();
  collector.WaitEnd();
}

TEST(FollowFileSourceTest, MissingFileIsNotFound) {
  TempDir dir;
  auto source = FollowFileSource::Open(dir / "nope.txt");
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), StatusCode::kNotFound);
}

TEST(FdSourceTest, ReadsAPipeToItsEnd) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  FdSource source(fds[0], "<pipe>");
  std::thread writer([&] {
    std::string text;
    for (int i = 0; i < 1000; ++i) text += "row " + std::to_string(i) + "\n";
    text += "tail";
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = write(fds[1], text.data() + done, text.size() - done);
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
  });
  std::vector<Read> reads = ReadAll(source);
  writer.join();
  close(fds[0]);
  ASSERT_EQ(reads.size(), 1001u);
  EXPECT_EQ(reads[999].text, "row 999");
  EXPECT_EQ(reads[1000].text, "tail");
  EXPECT_EQ(reads[0].origin, "<pipe>");
}

TEST(FdSourceTest, StopInterruptsABlockedRead) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    FdSource source(fds[0], "<pipe>");
    ASSERT_EQ(write(fds[1], "x\n", 2), 2);
    Collector collector(&source);
    EXPECT_EQ(collector.WaitFor(1), std::vector<std::string>{"x"});
    source.RequestStop();
    EXPECT_LT(collector.WaitEnd().count(), 2000);
  }
  close(fds[0]);
  close(fds[1]);
}

TEST(ZmqPullSourceTest, OneRowPerMessageUntilAnEmptyMessage) {
  zmq::context_t context;
  auto source = ZmqPullSource::Create(context, "tcp://127.0.0.1:*", /*bind=*/true);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_NE((*source)->endpoint().find("tcp://127.0.0.1:"), std::string::npos);
  zmq::socket_t push(context, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 1000);
  push.connect((*source)->endpoint());
  for (const char* text : {"a 1:1", "b\n", "c\r\n"}) push.send(zmq::buffer(std::string_view(text)));
  push.send(zmq::message_t(), zmq::send_flags::none);
  push.send(zmq::buffer(std::string_view("after the end")));
  std::vector<Read> reads = ReadAll(**source);
  EXPECT_EQ(Texts(reads), (std::vector<std::string>{"a 1:1", "b", "c\r"}));
  EXPECT_EQ(reads[2].line_number, 3u);
  EXPECT_EQ(reads[0].origin, (*source)->endpoint());
  Line line;
  auto more = (*source)->Next(&line);  // stays ended
  ASSERT_TRUE(more.ok());
  EXPECT_FALSE(*more);
}

TEST(ZmqPullSourceTest, InprocConnectAndStop) {
  zmq::context_t context;
  zmq::socket_t push(context, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 0);
  push.bind("inproc://rows");
  auto source = ZmqPullSource::Create(context, "inproc://rows", /*bind=*/false);
  ASSERT_TRUE(source.ok()) << source.status();
  push.send(zmq::buffer(std::string_view("row")));
  {
    Collector collector(source->get());
    EXPECT_EQ(collector.WaitFor(1), std::vector<std::string>{"row"});
    (*source)->RequestStop();
    EXPECT_LT(collector.WaitEnd().count(), 2000);
  }
  source->reset();
}

TEST(ZmqPullSourceTest, BadEndpointIsAnError) {
  zmq::context_t context;
  auto source = ZmqPullSource::Create(context, "nonsense://x", true);
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), StatusCode::kUnavailable);
}

TEST(ShardedSourceTest, EveryRowGoesToExactlyOneWorker) {
  TempDir dir;
  // Two files, so the global index runs across file boundaries.
  std::string a, b;
  for (int i = 0; i < 53; ++i) a += "r" + std::to_string(i) + "\n";
  for (int i = 53; i < 103; ++i) b += "r" + std::to_string(i) + "\n";
  dir.File("part-0", a);
  dir.File("part-1", b);
  for (uint32_t w = 1; w <= 4; ++w) {
    std::multiset<std::string> all;
    for (uint32_t k = 0; k < w; ++k) {
      auto files = FileListSource::Open({dir.path()});
      ASSERT_TRUE(files.ok());
      ShardedSource shard(std::move(*files), k, w);
      std::vector<std::string> texts = Texts(ReadAll(shard));
      EXPECT_EQ(texts.size(), 103 / w + (k < 103 % w ? 1 : 0)) << w << " " << k;
      for (size_t j = 0; j < texts.size(); ++j)
        EXPECT_EQ(texts[j], "r" + std::to_string(k + j * w));
      all.insert(texts.begin(), texts.end());
    }
    ASSERT_EQ(all.size(), 103u) << w;
    for (int i = 0; i < 103; ++i) EXPECT_EQ(all.count("r" + std::to_string(i)), 1u) << w;
  }
}

}  // namespace
}  // namespace eddy::worker
