// The file contract every Env must keep, run against the io_uring backend,
// the pread/pwrite fallback and MemEnv; and the proof that the fallback is
// chosen when the kernel refuses io_uring.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/io_backend.h"
#include "qcloud/core/env.h"
#include "qcloud/testing/doctest_helpers.h"
#include "seccomp.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud {
namespace {

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/qcloud-env-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
};

std::span<std::byte> Span(std::string& s) {
  return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}

void RunFileContract(Env& env, const std::string& dir) {
  REQUIRE_OK(env.CreateDirs(JoinPath(dir, "a/b")));
  const std::string path = JoinPath(dir, "a/b/f");

  SUBCASE("write, read back, short read at end of file") {
    auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kCreate));
    CHECK_OK(f->WriteAt(0, std::string_view("hello world")));
    CHECK_OK(f->WriteAt(6, std::string_view("WORLD")));
    CHECK(REQUIRE_VALUE(f->Size()) == 11);
    std::string buf(32, '\0');
    CHECK(REQUIRE_VALUE(f->ReadAt(0, Span(buf))) == 11);
    CHECK(buf.substr(0, 11) == "hello WORLD");
    CHECK(REQUIRE_VALUE(f->ReadAt(100, Span(buf))) == 0);
    CHECK_OK(f->Sync());
    CHECK(REQUIRE_VALUE(ReadFileToString(env, path)) == "hello WORLD");
  }

  SUBCASE("holes read as zeros") {
    auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kCreate));
    CHECK_OK(f->WriteAt(4096, std::string_view("x")));
    std::string buf(4097, 'z');
    CHECK(REQUIRE_VALUE(f->ReadAt(0, Span(buf))) == 4097);
    CHECK(std::all_of(buf.begin(), buf.begin() + 4096, [](char c) { return c == 0; }));
    CHECK(buf[4096] == 'x');
  }

  SUBCASE("a batch larger than the ring, mixed with a read past the end") {
    auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kTruncate));
    constexpr int kN = 200;  // > the default 64 ring entries
    std::vector<std::string> blocks(kN);
    std::vector<IoRequest> writes(kN);
    for (int i = 0; i < kN; ++i) {
      blocks[i] = std::string(512, static_cast<char>('A' + i % 26));
      writes[i] = {.op = IoRequest::Op::kWrite, .offset = uint64_t(i) * 512, .buffer = Span(blocks[i])};
    }
    REQUIRE_OK(f->Submit(writes));
    for (auto& w : writes) CHECK(w.transferred == 512);
    std::vector<std::string> got(kN + 1, std::string(512, '\0'));
    std::vector<IoRequest> reads(kN + 1);
    for (int i = 0; i <= kN; ++i) {
      reads[i] = {.op = IoRequest::Op::kRead, .offset = uint64_t(i) * 512, .buffer = Span(got[i])};
    }
    REQUIRE_OK(f->Submit(reads));
    for (int i = 0; i < kN; ++i) {
      CHECK(reads[i].transferred == 512);
      CHECK(got[i] == blocks[i]);
    }
    CHECK(reads[kN].transferred == 0);  // past the end
  }

  SUBCASE("concurrent positional writers") {
    auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kTruncate));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        std::string block(1024, static_cast<char>('a' + t));
        for (int i = 0; i < 50; ++i) {
          (void)f->WriteAt(uint64_t(i * 4 + t) * 1024, block);
        }
      });
    }
    for (auto& t : threads) t.join();
    std::string all = REQUIRE_VALUE(ReadFileToString(env, path));
    REQUIRE(all.size() == 200 * 1024);
    for (int i = 0; i < 200; ++i) CHECK(all[size_t(i) * 1024] == 'a' + i % 4);
  }

  SUBCASE("open modes") {
    CHECK_ERRC(env.OpenFile(path, OpenMode::kReadOnly), Errc::kNotFound);
    CHECK_ERRC(env.OpenFile(path, OpenMode::kReadWrite), Errc::kNotFound);
    { auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kCreateExclusive)); }
    CHECK_ERRC(env.OpenFile(path, OpenMode::kCreateExclusive), Errc::kAlreadyExists);
    CHECK(env.FileExists(path));
    CHECK_ERRC(env.OpenFile(JoinPath(dir, "missing/f"), OpenMode::kCreate), Errc::kNotFound);
  }

  SUBCASE("rename, list, remove, truncate") {
    CHECK_OK(WriteFileAtomically(env, path, std::string_view("v1")));
    CHECK_OK(WriteFileAtomically(env, path, std::string_view("v2")));
    CHECK(REQUIRE_VALUE(ReadFileToString(env, path)) == "v2");
    CHECK_OK(env.RenameFile(path, JoinPath(dir, "a/b/g")));
    CHECK_FALSE(env.FileExists(path));
    auto names = REQUIRE_VALUE(env.ListDir(JoinPath(dir, "a/b")));
    CHECK(names == std::vector<std::string>{"g"});
    auto names_a = REQUIRE_VALUE(env.ListDir(JoinPath(dir, "a")));
    CHECK(names_a == std::vector<std::string>{"b"});
    {
      auto g = REQUIRE_VALUE(env.OpenFile(JoinPath(dir, "a/b/g"), OpenMode::kReadWrite));
      CHECK_OK(g->Truncate(1));
      CHECK(REQUIRE_VALUE(g->Size()) == 1);
    }
    CHECK(REQUIRE_VALUE(env.FileSize(JoinPath(dir, "a/b/g"))) == 1);
    CHECK_OK(env.RemoveFile(JoinPath(dir, "a/b/g")));
    CHECK_ERRC(env.RemoveFile(JoinPath(dir, "a/b/g")), Errc::kNotFound);
    CHECK_OK(env.SyncDir(JoinPath(dir, "a/b")));
    CHECK(REQUIRE_VALUE(env.ListDir(JoinPath(dir, "a/b"))).empty());
  }

  SUBCASE("an open file outlives its name") {
    auto f = REQUIRE_VALUE(env.OpenFile(path, OpenMode::kCreate));
    CHECK_OK(f->WriteAt(0, std::string_view("still here")));
    CHECK_OK(env.RemoveFile(path));
    std::string buf(10, '\0');
    CHECK(REQUIRE_VALUE(f->ReadAt(0, Span(buf))) == 10);
    CHECK(buf == "still here");
  }

  SUBCASE("size limits on whole-file reads") {
    CHECK_OK(WriteFileAtomically(env, path, std::string(100, 'x')));
    CHECK_ERRC(ReadFileToString(env, path, 99), Errc::kTooLarge);
  }
}

TEST_CASE("env: io_uring backend keeps the file contract") {
  if (!core_internal::IoUringAllowed()) {
    MESSAGE("skipped: this host refuses io_uring_setup (old kernel, seccomp or sysctl)");
    return;
  }
  auto env = REQUIRE_VALUE(OpenPosixEnv({.backend = IoBackend::kIoUring}));
  CHECK(env->io_backend() == "io_uring");
  TempDir dir;
  RunFileContract(*env, dir.path);
}

TEST_CASE("env: pread/pwrite fallback keeps the file contract") {
  auto env = REQUIRE_VALUE(OpenPosixEnv({.backend = IoBackend::kPosix}));
  CHECK(env->io_backend() == "posix");
  TempDir dir;
  RunFileContract(*env, dir.path);
}

TEST_CASE("env: MemEnv keeps the file contract") {
  testing::MemEnv env;
  RunFileContract(env, "/mem");
}

TEST_CASE("env: auto picks io_uring where the kernel allows it") {
  auto env = REQUIRE_VALUE(OpenPosixEnv());
  CHECK(env->io_backend() == (core_internal::IoUringAllowed() ? "io_uring" : "posix"));
}

TEST_CASE("env: options are validated") {
  CHECK_ERRC(OpenPosixEnv({.ring_entries = 0}), Errc::kInvalidArgument);
}

TEST_CASE("env: fallback is chosen when io_uring is refused") {
  TempDir dir;
  // The filter binds only the thread that installs it, so the rest of the
  // test process keeps io_uring.
  bool installed = false;
  std::string backend_auto, forced_error, contents;
  std::thread t([&] {
    installed = test::RefuseIoUringInThisThread();
    if (!installed) return;
    auto forced = OpenPosixEnv({.backend = IoBackend::kIoUring});
    forced_error = forced.ok() ? "ok" : forced.error().ToString();
    auto env = OpenPosixEnv();
    if (!env.ok()) return;
    backend_auto = std::string((*env)->io_backend());
    std::string path = JoinPath(dir.path, "f");
    if (!WriteFileAtomically(**env, path, std::string_view("fallback works")).ok()) return;
    contents = ReadFileToString(**env, path).value_or("");
  });
  t.join();
  REQUIRE(installed);
  CHECK(forced_error.find("not supported") != std::string::npos);
  CHECK(forced_error.find("io_uring_setup refused") != std::string::npos);
  CHECK(backend_auto == "posix");
  CHECK(contents == "fallback works");
}

}  // namespace
}  // namespace qcloud
