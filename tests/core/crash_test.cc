// Crash tests: a writer process is killed with SIGKILL at random points and
// what it left on disk must be whole. Labelled `crash`.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/fault_injection_env.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud {
namespace {

// A self-checking record: "<n> <xxh3 of body> <body>", body 64 KiB.
std::string Record(uint64_t n) {
  std::string body(64 * 1024, static_cast<char>('a' + n % 26));
  body += std::to_string(n);
  return std::to_string(n) + " " + std::to_string(Xxh3_64(body)) + " " + body;
}

bool Whole(const std::string& s, uint64_t* n) {
  auto a = s.find(' ');
  auto b = s.find(' ', a + 1);
  if (a == std::string::npos || b == std::string::npos) return false;
  *n = std::stoull(s.substr(0, a));
  std::string body = s.substr(b + 1);
  return std::to_string(Xxh3_64(body)) == s.substr(a + 1, b - a - 1) && s == Record(*n);
}

TEST_CASE("crash: WriteFileAtomically leaves the old or the new file whole under SIGKILL") {
  char tmpl[] = "/tmp/qcloud-crash-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string dir = tmpl, path = JoinPath(dir, "manifest");
  std::mt19937 rng(12345);
  uint64_t last_seen = 0;
  for (int round = 0; round < 15; ++round) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // Child: rewrite the file as fast as it can, each version numbered.
      auto env = OpenPosixEnv();
      if (!env.ok()) _exit(3);
      // Each round numbers from far above what any earlier round can reach.
      for (uint64_t n = uint64_t{1} << (32 + round);; ++n) {
        if (!WriteFileAtomically(**env, path, Record(n)).ok()) _exit(4);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 60));
    REQUIRE(kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));  // it was writing, not failing
    auto env = REQUIRE_VALUE(OpenPosixEnv());
    if (!env->FileExists(path)) continue;  // killed before its first rename
    uint64_t n = 0;
    std::string s = REQUIRE_VALUE(ReadFileToString(*env, path));
    CHECK_MESSAGE(Whole(s, &n), "torn file after SIGKILL, size " << s.size());
    CHECK(n >= last_seen);
    last_seen = n;
  }
  CHECK(last_seen > 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("crash: after a simulated power cut only synced writes survive") {
  // The same contract at the power-cut level, where unsynced page cache is
  // lost too: FaultInjectionEnv drops it.
  testing::MemEnv mem;
  testing::FaultInjectionEnv env(mem);
  REQUIRE_OK(env.CreateDirs("/db"));
  for (uint64_t n = 1; n <= 5; ++n) REQUIRE_OK(WriteFileAtomically(env, "/db/manifest", Record(n)));
  auto f = REQUIRE_VALUE(env.OpenFile("/db/manifest.tmp", OpenMode::kTruncate));
  REQUIRE_OK(f->WriteAt(0, Record(6)));  // never synced nor renamed
  f.reset();
  REQUIRE_OK(env.DropUnsyncedData());
  uint64_t n = 0;
  CHECK(Whole(REQUIRE_VALUE(ReadFileToString(env, "/db/manifest")), &n));
  CHECK(n == 5);
}

}  // namespace
}  // namespace qcloud
