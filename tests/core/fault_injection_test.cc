#include <doctest/doctest.h>

#include <string>

#include "qcloud/testing/doctest_helpers.h"
#include "qcloud/testing/fault_injection_env.h"
#include "qcloud/testing/mem_env.h"

namespace qcloud::testing {
namespace {

std::string Contents(Env& env, const std::string& path) {
  return REQUIRE_VALUE(ReadFileToString(env, path));
}

struct Fixture {
  Fixture() : env(mem) { REQUIRE_OK(env.CreateDirs("/d")); }
  MemEnv mem;
  FaultInjectionEnv env;
};

TEST_CASE("fault injection: unsynced appends are lost, synced ones kept") {
  Fixture fx;
  auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/log", OpenMode::kCreate));
  CHECK_OK(fx.env.SyncDir("/d"));
  CHECK_OK(f->WriteAt(0, std::string_view("durable;")));
  CHECK_OK(f->Sync());
  CHECK_OK(f->WriteAt(8, std::string_view("volatile")));
  CHECK(Contents(fx.env, "/d/log") == "durable;volatile");
  f.reset();
  CHECK_OK(fx.env.DropUnsyncedData());
  CHECK(Contents(fx.env, "/d/log") == "durable;");
}

TEST_CASE("fault injection: unsynced overwrites are rolled back") {
  Fixture fx;
  auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/f", OpenMode::kCreate));
  CHECK_OK(fx.env.SyncDir("/d"));
  CHECK_OK(f->WriteAt(0, std::string_view("aaaaaaaa")));
  CHECK_OK(f->Sync());
  CHECK_OK(f->WriteAt(2, std::string_view("bb")));
  CHECK_OK(f->WriteAt(6, std::string_view("cccc")));
  CHECK_OK(f->Truncate(3));
  f.reset();
  CHECK_OK(fx.env.DropUnsyncedData());
  CHECK(Contents(fx.env, "/d/f") == "aaaaaaaa");
}

TEST_CASE("fault injection: batched writes are tracked like single ones") {
  Fixture fx;
  auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/f", OpenMode::kCreate));
  CHECK_OK(fx.env.SyncDir("/d"));
  std::string a = "1111", b = "2222";
  IoRequest reqs[] = {
      {.op = IoRequest::Op::kWrite, .offset = 0, .buffer = {reinterpret_cast<std::byte*>(a.data()), 4}},
      {.op = IoRequest::Op::kWrite, .offset = 4, .buffer = {reinterpret_cast<std::byte*>(b.data()), 4}},
  };
  CHECK_OK(f->Submit(reqs));
  CHECK(fx.env.PendingUndoCount() == 2);
  f.reset();
  CHECK_OK(fx.env.DropUnsyncedData());
  CHECK(Contents(fx.env, "/d/f").empty());
}

TEST_CASE("fault injection: namespace changes need SyncDir") {
  Fixture fx;
  SUBCASE("a created file vanishes") {
    { auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/new", OpenMode::kCreate)); CHECK_OK(f->Sync()); }
    CHECK_OK(fx.env.DropUnsyncedData());
    CHECK_FALSE(fx.env.FileExists("/d/new"));
  }
  SUBCASE("a created and dir-synced file stays") {
    { auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/new", OpenMode::kCreate)); CHECK_OK(f->Sync()); }
    CHECK_OK(fx.env.SyncDir("/d"));
    CHECK_OK(fx.env.DropUnsyncedData());
    CHECK(fx.env.FileExists("/d/new"));
  }
  SUBCASE("a removed file returns") {
    CHECK_OK(WriteFileAtomically(fx.env, "/d/old", std::string_view("keep me")));
    CHECK_OK(fx.env.RemoveFile("/d/old"));
    CHECK_OK(fx.env.DropUnsyncedData());
    CHECK(Contents(fx.env, "/d/old") == "keep me");
  }
  SUBCASE("a rename over an existing file is reversed") {
    CHECK_OK(WriteFileAtomically(fx.env, "/d/cur", std::string_view("v1")));
    {
      auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/cur.new", OpenMode::kCreate));
      CHECK_OK(f->WriteAt(0, std::string_view("v2")));
      CHECK_OK(f->Sync());
    }
    CHECK_OK(fx.env.RenameFile("/d/cur.new", "/d/cur"));
    CHECK(Contents(fx.env, "/d/cur") == "v2");
    CHECK_OK(fx.env.DropUnsyncedData());
    CHECK(Contents(fx.env, "/d/cur") == "v1");
    CHECK_FALSE(fx.env.FileExists("/d/cur.new"));  // its creation was not dir-synced either
  }
  SUBCASE("WriteFileAtomically survives the cut whole") {
    CHECK_OK(WriteFileAtomically(fx.env, "/d/manifest", std::string_view("m1")));
    CHECK_OK(fx.env.DropUnsyncedData());
    CHECK(Contents(fx.env, "/d/manifest") == "m1");
  }
}

TEST_CASE("fault injection: injected failures") {
  Fixture fx;
  auto f = REQUIRE_VALUE(fx.env.OpenFile("/d/f", OpenMode::kCreate));
  fx.env.SetFailure(FailureMode::kWrites);
  CHECK_ERRC(f->WriteAt(0, std::string_view("x")), Errc::kIoError);
  CHECK_ERRC(f->Sync(), Errc::kIoError);
  CHECK_ERRC(fx.env.OpenFile("/d/g", OpenMode::kCreate), Errc::kIoError);
  std::string buf(1, '\0');
  CHECK(f->ReadAt(0, {reinterpret_cast<std::byte*>(buf.data()), 1}).ok());
  fx.env.SetFailure(FailureMode::kAll);
  CHECK_ERRC(f->ReadAt(0, {reinterpret_cast<std::byte*>(buf.data()), 1}), Errc::kIoError);
  fx.env.SetFailure(FailureMode::kNone);
  CHECK_OK(f->WriteAt(0, std::string_view("x")));
}

}  // namespace
}  // namespace qcloud::testing
