// The admin protocol: every command on a real Store, the lines it refuses,
// its replies parsed back, and the socket round trip through AdminServer.

#include "qcloud/block/admin.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "qcloud/block/store.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::block {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

std::unique_ptr<Store> OpenStore(const std::string& dir) {
  auto s = Store::Open({.data_dir = dir});
  REQUIRE_OK(s);
  return std::move(s).value();
}

// Checks `line` is refused with `code` (its name in the ERR line) and no data.
void CheckErr(Store& store, std::string_view line, std::string_view code) {
  const std::string reply = RunAdminCommand(store, line);
  INFO("request: ", std::string(line.substr(0, 80)), " reply: ", reply.substr(0, 200));
  CHECK(reply.starts_with("ERR " + std::string(code) + " "));
  CHECK(reply.find('\n') == reply.size() - 1);
}

void FillVolume(Store& store, std::string_view name, std::byte value, size_t n) {
  auto v = REQUIRE_VALUE(store.OpenVolume(name));
  std::vector<std::byte> buf(n, value);
  REQUIRE_OK(v->Write(0, ByteView(buf.data(), buf.size()), /*fua=*/true));
}

std::byte FirstByte(Store& store, std::string_view name) {
  auto v = REQUIRE_VALUE(store.OpenVolume(name));
  std::byte b{0x77};
  REQUIRE_OK(v->Read(0, MutableByteView(&b, 1)));
  return b;
}

TEST_CASE("admin volume commands create list resize delete") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path);
  CHECK(RunAdminCommand(*store, "list") == "OK\n");
  CHECK(RunAdminCommand(*store, "create vm1 10G") == "OK\n");
  CHECK(RunAdminCommand(*store, "  create   img  4100K ") == "OK\n");  // runs of spaces
  FillVolume(*store, "img", std::byte{1}, 4096);
  CHECK(RunAdminCommand(*store, "list") ==
        "img\t4100K\tallocated 1M\nvm1\t10G\tallocated 0B\nOK\n");
  CHECK(RunAdminCommand(*store, "resize vm1 20GiB") == "OK\n");
  CHECK(REQUIRE_VALUE(store->GetVolume("vm1")).size == (uint64_t{20} << 30));
  // An odd size is rounded up to a block, and printed as what it became.
  CHECK(RunAdminCommand(*store, "resize img 5000") == "OK\n");
  CHECK(RunAdminCommand(*store, "list") == "img\t8K\tallocated 1M\nvm1\t20G\tallocated 0B\nOK\n");
  CHECK(RunAdminCommand(*store, "create big 1024T") == "OK\n");  // the largest: 1 PiB, thin
  CHECK(RunAdminCommand(*store, "list").starts_with("big\t1024T\tallocated 0B\n"));
  CHECK(RunAdminCommand(*store, "delete big") == "OK\n");
  CHECK(RunAdminCommand(*store, "delete vm1") == "OK\n");
  CHECK(RunAdminCommand(*store, "list") == "img\t8K\tallocated 1M\nOK\n");
  CheckErr(*store, "delete vm1", "not_found");
  CheckErr(*store, "resize vm1 1G", "not_found");
  CheckErr(*store, "create img 1G", "already_exists");
}

TEST_CASE("admin snapshot rollback clone and their listings") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path);
  REQUIRE(RunAdminCommand(*store, "create vol 4M") == "OK\n");
  REQUIRE(RunAdminCommand(*store, "create other 1M") == "OK\n");
  FillVolume(*store, "vol", std::byte{0x5a}, 1 << 20);
  CHECK(RunAdminCommand(*store, "snapshot vol s1") == "OK\n");
  CHECK(RunAdminCommand(*store, "snapshot other base") == "OK\n");
  FillVolume(*store, "vol", std::byte{0xa5}, 1 << 20);
  CHECK(RunAdminCommand(*store, "resize vol 8M") == "OK\n");
  CHECK(RunAdminCommand(*store, "snapshot vol s2") == "OK\n");
  CHECK(RunAdminCommand(*store, "snapshots vol") == "vol@s1\t4M\nvol@s2\t8M\nOK\n");
  const std::string all = RunAdminCommand(*store, "snapshots");
  CHECK(all.find("other@base\t1M\n") != std::string::npos);
  CHECK(all.find("vol@s1\t4M\n") != std::string::npos);
  CHECK(all.ends_with("\nOK\n"));
  CheckErr(*store, "snapshots nosuch", "not_found");

  CHECK(RunAdminCommand(*store, "clone vol s1 copy") == "OK\n");
  CHECK(FirstByte(*store, "copy") == std::byte{0x5a});
  CHECK(RunAdminCommand(*store, "list").find("copy\t4M\tallocated 0B\torigin vol@s1\n") !=
        std::string::npos);
  CHECK(RunAdminCommand(*store, "rollback vol s1") == "OK\n");
  CHECK(FirstByte(*store, "vol") == std::byte{0x5a});
  CHECK(REQUIRE_VALUE(store->GetVolume("vol")).size == (4u << 20));
  CHECK(RunAdminCommand(*store, "delete-snapshot vol s2") == "OK\n");
  CHECK(RunAdminCommand(*store, "snapshots vol") == "vol@s1\t4M\nOK\n");
  CheckErr(*store, "delete-snapshot vol s2", "not_found");
  CheckErr(*store, "rollback vol s2", "not_found");
  CheckErr(*store, "clone vol s2 x", "not_found");
  CheckErr(*store, "clone vol s1 copy", "already_exists");
  CheckErr(*store, "snapshot vol s1", "already_exists");
  CheckErr(*store, "snapshot nosuch s", "not_found");
}

TEST_CASE("admin copies lists the data directory") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path);
  const std::string reply = RunAdminCommand(*store, "copies");
  INFO(reply);
  CHECK(reply.starts_with(dir.path));
  CHECK(reply.ends_with("\twhole\tmissed 0\trebuilt 0\nOK\n"));
  CHECK(std::count(reply.begin(), reply.end(), '\n') == 2);
}

TEST_CASE("admin malformed lines are invalid_argument") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path);
  REQUIRE(RunAdminCommand(*store, "create vol 1M") == "OK\n");
  CheckErr(*store, "", "invalid_argument");
  CheckErr(*store, "    ", "invalid_argument");
  CheckErr(*store, std::string(kMaxAdminLineBytes + 1, 'a'), "invalid_argument");
  CHECK(
      RunAdminCommand(*store, std::string(kMaxAdminLineBytes + 1, 'a')).find("longer than 4096") !=
      std::string::npos);
  // Exactly at the bound the line is read, then refused for what it says.
  CHECK(RunAdminCommand(*store, "list" + std::string(kMaxAdminLineBytes - 4, ' ')) ==
        "vol\t1M\tallocated 0B\nOK\n");
  for (std::string_view bad :
       {std::string_view("list\t"), std::string_view("list\r"), std::string_view("li\nst"),
        std::string_view("list\x7f"), std::string_view("list\x1b[2J")}) {
    CheckErr(*store, bad, "invalid_argument");
  }
  CheckErr(*store, std::string_view("list\0", 5), "invalid_argument");
  CheckErr(*store, "clone a b c d e f g h", "invalid_argument");  // 9 words
  CheckErr(*store, "list a b c d e f g h i j k l", "invalid_argument");
  CheckErr(*store, "frobnicate vol", "invalid_argument");
  CheckErr(*store, "LIST", "invalid_argument");
  CHECK(RunAdminCommand(*store, "frobnicate").find("commands: create list") != std::string::npos);
  // Wrong arity, for every command.
  for (std::string_view line :
       {"create", "create vol", "create vol 1M x", "list x", "resize vol", "delete", "delete vol x",
        "snapshot vol", "snapshots a b", "delete-snapshot vol", "rollback vol", "rollback vol s x",
        "clone vol s", "copies x"}) {
    CheckErr(*store, line, "invalid_argument");
  }
  CHECK(RunAdminCommand(*store, "clone vol s") ==
        "ERR invalid_argument usage: clone NAME SNAPSHOT NEW-NAME\n");
  // Sizes: ParseByteSize's rule, then the store's bounds.
  for (std::string_view line : {"create v2 -1", "create v2 10X", "create v2 1.5G", "create v2 0x10",
                                "create v2 99999999999999999999", "create v2 1P", "create v2 0",
                                "create v2 2048T", "resize vol 0", "resize vol 1Q"}) {
    CheckErr(*store, line, "invalid_argument");
  }
  // Names: the store's rule.
  for (std::string_view line :
       {"create .hidden 1M", "create a/b 1M", "create a@b 1M", "create ../x 1M", "snapshot vol .s",
        "snapshot vol s/x", "clone vol s ..", "create \xff\xfe 1M"}) {
    CheckErr(*store, line, "invalid_argument");
  }
  CheckErr(*store, "create " + std::string(kMaxNameLength + 1, 'n') + " 1M", "invalid_argument");
  CHECK(RunAdminCommand(*store, "create " + std::string(kMaxNameLength, 'n') + " 1M") == "OK\n");
  CHECK(RunAdminCommand(*store, "list").find("vol\t1M\tallocated 0B\n") != std::string::npos);
}

TEST_CASE("admin replies parse back to their status") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path);
  auto ok = REQUIRE_VALUE(ParseAdminReply(RunAdminCommand(*store, "create vol 1M")));
  CHECK_OK(ok.status);
  CHECK(ok.data.empty());
  auto listed = REQUIRE_VALUE(ParseAdminReply(RunAdminCommand(*store, "list")));
  CHECK(listed.data == "vol\t1M\tallocated 0B\n");
  auto missing = REQUIRE_VALUE(ParseAdminReply(RunAdminCommand(*store, "delete nosuch")));
  CHECK(missing.status == Errc::kNotFound);
  // The same text the store's own status prints, so the CLI says the same
  // thing whether it ran the command or the server did.
  CHECK(missing.status.ToString() == store->DeleteVolume("nosuch").ToString());
  auto parsed = REQUIRE_VALUE(ParseAdminReply("ERR errno_28 write: No space left\n"));
  CHECK(parsed.status.code() == std::error_code(28, std::system_category()));
  auto unknown = REQUIRE_VALUE(ParseAdminReply("a\tb\nERR martian_error it came from above\n"));
  CHECK(unknown.status == Errc::kIoError);
  CHECK(unknown.status.message() == "martian_error: it came from above");
  CHECK(unknown.data == "a\tb\n");
  const std::pair<std::string_view, Errc> names[] = {
      {"invalid_argument", Errc::kInvalidArgument},
      {"already_exists", Errc::kAlreadyExists},
      {"resource_exhausted", Errc::kResourceExhausted},
      {"unavailable", Errc::kUnavailable},
      {"too_large", Errc::kTooLarge}};
  for (const auto& [name, code] : names) {
    auto r = REQUIRE_VALUE(ParseAdminReply("ERR " + std::string(name) + " m\n"));
    CHECK(r.status == code);
  }
  for (std::string_view bad :
       {"", "OK", "list\nOK\n", "ERR\n", "ERR  x\n", "a\tb\n", "OK\nOK\n", "vol\t1M\n"}) {
    INFO(bad);
    CHECK_ERRC(ParseAdminReply(bad), Errc::kProtocolError);
  }
}

// A raw client: sends `bytes` as they are, shuts down its side if asked,
// and returns everything the server sends until it closes.
std::string RawExchange(const std::string& path, std::string_view bytes, bool shutdown_write) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (!bytes.empty())
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == ssize_t(bytes.size()));
  if (shutdown_write) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      out.append(buf, size_t(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // the end, or the reset after a line the server did not read whole
    }
  }
  ::close(fd);
  return out;
}

TEST_CASE("admin server and client round trip over a unix socket") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path + "/data");
  const std::string path = dir.path + "/admin.sock";
  auto server = REQUIRE_VALUE(AdminServer::Open(*store, path, {.io_timeout = 300ms}));
  CHECK(server->socket_path() == path);
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  // A second server on a live socket is refused; the first keeps it.
  CHECK_ERRC(AdminServer::Open(*store, path), Errc::kAlreadyExists);

  Status served = IoError("not returned");
  std::thread thread([&] { served = server->Serve(); });

  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "create vm1 1G", 5s)) == "OK\n");
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "clone vm1 nosnap x", 5s)) ==
        RunAdminCommand(*store, "clone vm1 nosnap x"));
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "snapshot vm1 s", 5s)) == "OK\n");
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "clone vm1 s vm2", 5s)) == "OK\n");
  const std::string listed = REQUIRE_VALUE(SendAdminCommand(path, "list", 5s));
  CHECK(listed == "vm1\t1G\tallocated 0B\nvm2\t1G\tallocated 0B\torigin vm1@s\nOK\n");
  CHECK(listed == RunAdminCommand(*store, "list"));
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "copies", 5s)) == RunAdminCommand(*store, "copies"));
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "bogus", 5s))
            .starts_with("ERR invalid_argument unknown command"));
  // Bounds of the client: checked before anything is sent.
  CHECK_ERRC(SendAdminCommand(path, std::string(kMaxAdminLineBytes + 1, 'x'), 5s),
             Errc::kInvalidArgument);
  CHECK_ERRC(SendAdminCommand(path, "list\nlist", 5s), Errc::kInvalidArgument);
  CHECK_ERRC(SendAdminCommand(dir.path + "/" + std::string(200, 's'), "list", 5s),
             Errc::kInvalidArgument);
  CHECK_ERRC(SendAdminCommand(dir.path + "/nothing.sock", "list", 5s), Errc::kUnavailable);

  // Raw clients: a line ended by shutdown; \r\n; a line far too long (the
  // server reads no more than the bound, and says so); one silent past the
  // timeout; one that connects and leaves. The server lives through all.
  CHECK(RawExchange(path, "list", true) == listed);
  CHECK(RawExchange(path, "list\r\nignored\n", false) == listed);
  CHECK(RawExchange(path, std::string(3 * kMaxAdminLineBytes, 'z'), false)
            .starts_with("ERR invalid_argument request longer than 4096 bytes"));
  CHECK(RawExchange(path, "lis", false) == "ERR timed_out no request line within the timeout\n");
  CHECK(RawExchange(path, "", true).empty());
  CHECK(REQUIRE_VALUE(SendAdminCommand(path, "delete vm2", 5s)) == "OK\n");

  // Clients one after another, from several threads at once.
  std::vector<std::thread> clients;
  std::atomic<int> oks{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      for (int j = 0; j < 5; ++j) {
        auto r = SendAdminCommand(
            path, "create t" + std::to_string(i) + "-" + std::to_string(j) + " 1M", 10s);
        if (r && *r == "OK\n") ++oks;
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(oks == 20);

  server->Stop();
  thread.join();
  CHECK_OK(served);
  CHECK(::lstat(path.c_str(), &st) != 0);  // removed
  CHECK_ERRC(SendAdminCommand(path, "list", 1s), Errc::kUnavailable);
  server->Stop();  // idempotent
}

TEST_CASE("admin server replaces a stale socket and stops before serving") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path + "/data");
  const std::string path = dir.path + "/admin.sock";
  {
    // A socket file nobody accepts on, as a server killed -9 leaves it.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
  }
  auto server = REQUIRE_VALUE(AdminServer::Open(*store, path));
  server->Stop();
  CHECK_OK(server->Serve());  // returns at once after a Stop
  struct stat st {};
  CHECK(::lstat(path.c_str(), &st) != 0);

  // Not a socket: not ours to remove.
  {
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fclose(f);
  }
  CHECK_ERRC(AdminServer::Open(*store, path), Errc::kAlreadyExists);
  CHECK(::lstat(path.c_str(), &st) == 0);
  CHECK_ERRC(AdminServer::Open(*store, dir.path + "/" + std::string(200, 's')),
             Errc::kInvalidArgument);
}

TEST_CASE("admin server stop interrupts a client that sends nothing") {
  TempDir dir("qcloud-admin");
  auto store = OpenStore(dir.path + "/data");
  const std::string path = dir.path + "/admin.sock";
  auto server = REQUIRE_VALUE(AdminServer::Open(*store, path, {.io_timeout = 60s}));
  std::thread thread([&] { CHECK_OK(server->Serve()); });
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  // The server is now (or soon) waiting on this silent client; Stop must
  // not wait out its 60 s.
  server->Stop();
  thread.join();
  ::close(fd);
}

}  // namespace
}  // namespace qcloud::block
