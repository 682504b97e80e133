#include "qcloud/block/admin.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "qcloud/core/check.h"
#include "qcloud/core/units.h"

namespace qcloud::block {

namespace {

using Args = std::span<const std::string_view>;

// ---- Text: sizes, codes, lines ----------------------------------------------

// Units a reply's sizes use; the largest that divides the size exactly. No
// P: ParseByteSize reads K..T only, and every size printed must read back.
std::string Human(uint64_t bytes) {
  static constexpr std::array<char, 5> kUnits = {'B', 'K', 'M', 'G', 'T'};
  size_t u = 0;
  while (u + 1 < kUnits.size() && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return fmt::format("{}{}", bytes, kUnits[u]);
}

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Text from the store (locations, errors, names) on one line of a reply.
std::string Clean(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (IsControl(static_cast<unsigned char>(c))) c = '?';
  }
  return out;
}

// Indexed by Errc's value; stable, part of the protocol.
constexpr std::array<std::string_view, 14> kCodeNames = {
    "ok",          "invalid_argument", "not_found",          "already_exists", "corruption",
    "io_error",    "not_supported",    "resource_exhausted", "out_of_range",   "aborted",
    "unavailable", "protocol_error",   "timed_out",          "too_large",
};
static_assert(kCodeNames.size() == static_cast<size_t>(Errc::kTooLarge) + 1);
constexpr std::string_view kErrnoPrefix = "errno_";

std::string CodeName(const std::error_code& code) {
  if (code.category() == CoreCategory() && code.value() > 0 &&
      static_cast<size_t>(code.value()) < kCodeNames.size()) {
    return std::string(kCodeNames[static_cast<size_t>(code.value())]);
  }
  if (code.category() == std::system_category() || code.category() == std::generic_category()) {
    return fmt::format("{}{}", kErrnoPrefix, code.value());
  }
  // Another subsystem's category: not one the block store returns today.
  return fmt::format("{}_{}", Clean(code.category().name()), code.value());
}

Status StatusFromName(std::string_view name, std::string message) {
  for (size_t i = 1; i < kCodeNames.size(); ++i) {
    if (kCodeNames[i] == name) return Status(static_cast<Errc>(i), std::move(message));
  }
  if (name.starts_with(kErrnoPrefix)) {
    std::string_view digits = name.substr(kErrnoPrefix.size());
    int err = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), err);
    if (ec == std::errc() && end == digits.data() + digits.size() && err > 0) {
      return Status(std::error_code(err, std::system_category()), std::move(message));
    }
  }
  return Status(Errc::kIoError, fmt::format("{}: {}", name, message));
}

constexpr std::string_view kOkLine = "OK";
constexpr std::string_view kErrPrefix = "ERR ";

std::string FinalLine(const Status& s) {
  if (s.ok()) return std::string(kOkLine) + "\n";
  return fmt::format("{}{} {}\n", kErrPrefix, CodeName(s.code()), Clean(s.message()));
}

// A final line (without its '\n'): data lines always hold a tab, so a
// volume called OK cannot end a reply early.
bool IsFinalLine(std::string_view line) {
  if (line.find('\t') != std::string_view::npos) return false;
  return line == kOkLine || line.starts_with(kErrPrefix);
}

// ---- Commands -----------------------------------------------------------------

Result<uint64_t> Size(std::string_view word) {
  auto size = ParseByteSize(word);
  if (!size) return size.status().WithContext("SIZE");
  return size;
}

Status Create(Store& store, Args a, std::string&) {
  QCLOUD_ASSIGN_OR_RETURN(uint64_t size, Size(a[1]));
  return store.CreateVolume(a[0], size);
}

Status Resize(Store& store, Args a, std::string&) {
  QCLOUD_ASSIGN_OR_RETURN(uint64_t size, Size(a[1]));
  return store.ResizeVolume(a[0], size);
}

Status Delete(Store& store, Args a, std::string&) { return store.DeleteVolume(a[0]); }

Status List(Store& store, Args, std::string& out) {
  for (const VolumeInfo& v : store.ListVolumes()) {
    out +=
        fmt::format("{}\t{}\tallocated {}", Clean(v.name), Human(v.size), Human(v.allocated_bytes));
    if (!v.origin.empty()) out += "\torigin " + Clean(v.origin);
    out += '\n';
  }
  return Status::Ok();
}

Status Snapshot(Store& store, Args a, std::string&) { return store.CreateSnapshot(a[0], a[1]); }

Status Snapshots(Store& store, Args a, std::string& out) {
  std::string_view volume = a.empty() ? std::string_view() : a[0];
  // ListSnapshots says nothing about a volume that is not there; a listing
  // of one should.
  if (!volume.empty()) QCLOUD_RETURN_IF_ERROR(store.GetVolume(volume).status());
  for (const SnapshotInfo& s : store.ListSnapshots(volume)) {
    out += fmt::format("{}@{}\t{}\n", Clean(s.volume), Clean(s.name), Human(s.size));
  }
  return Status::Ok();
}

Status DeleteSnapshot(Store& store, Args a, std::string&) {
  return store.DeleteSnapshot(a[0], a[1]);
}

Status Rollback(Store& store, Args a, std::string&) { return store.Rollback(a[0], a[1]); }

Status Clone(Store& store, Args a, std::string&) { return store.Clone(a[0], a[1], a[2]); }

Status Copies(Store& store, Args, std::string& out) {
  for (const CopyInfo& c : store.copies()) {
    out += fmt::format("{}\t{}\tmissed {}\trebuilt {}", Clean(c.location), Clean(c.health),
                       c.missed_extents, c.rebuilt_extents);
    if (c.resyncing) out += "\tresyncing";
    if (c.failures != 0) out += fmt::format("\tfailures {}", c.failures);
    if (!c.last_error.empty()) out += "\terror " + Clean(c.last_error);
    out += '\n';
  }
  return Status::Ok();
}

struct Command {
  std::string_view name;
  size_t min_args;
  size_t max_args;
  std::string_view usage;  // the words after the name
  Status (*run)(Store&, Args, std::string& out);
};

constexpr Command kCommands[] = {
    {"create", 2, 2, "NAME SIZE", Create},
    {"list", 0, 0, "", List},
    {"resize", 2, 2, "NAME SIZE", Resize},
    {"delete", 1, 1, "NAME", Delete},
    {"snapshot", 2, 2, "NAME SNAPSHOT", Snapshot},
    {"snapshots", 0, 1, "[NAME]", Snapshots},
    {"delete-snapshot", 2, 2, "NAME SNAPSHOT", DeleteSnapshot},
    {"rollback", 2, 2, "NAME SNAPSHOT", Rollback},
    {"clone", 3, 3, "NAME SNAPSHOT NEW-NAME", Clone},
    {"copies", 0, 0, "", Copies},
};

std::string CommandNames() {
  std::string names;
  for (const Command& c : kCommands) {
    if (!names.empty()) names += ' ';
    names += c.name;
  }
  return names;
}

// The words of a request line, or why it is not one.
Result<std::vector<std::string_view>> Words(std::string_view line) {
  if (line.size() > kMaxAdminLineBytes) {
    return InvalidArgument(fmt::format("request longer than {} bytes", kMaxAdminLineBytes));
  }
  for (size_t i = 0; i < line.size(); ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (IsControl(c))
      return InvalidArgument(
          fmt::format("control byte 0x{:02x} at offset {} of the request", c, i));
  }
  std::vector<std::string_view> words;
  size_t i = 0;
  while (true) {
    i = line.find_first_not_of(' ', i);
    if (i == std::string_view::npos) break;
    if (words.size() == kMaxAdminWords)
      return InvalidArgument(fmt::format("more than {} words", kMaxAdminWords));
    const size_t end = std::min(line.find(' ', i), line.size());
    words.push_back(line.substr(i, end - i));
    i = end;
  }
  if (words.empty()) return InvalidArgument("empty request; commands: " + CommandNames());
  return words;
}

Status Run(Store& store, std::string_view line, std::string& out) {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string_view> words, Words(line));
  const Args args = Args(words).subspan(1);
  for (const Command& c : kCommands) {
    if (c.name != words[0]) continue;
    if (args.size() < c.min_args || args.size() > c.max_args) {
      return InvalidArgument(
          fmt::format("usage: {}{}{}", c.name, c.usage.empty() ? "" : " ", c.usage));
    }
    return c.run(store, args, out);
  }
  constexpr size_t kEcho = 64;  // of an unknown command, in the message
  return InvalidArgument(
      fmt::format("unknown command '{}'; commands: {}", words[0].substr(0, kEcho), CommandNames()));
}

// ---- Sockets ------------------------------------------------------------------

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    Reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const noexcept { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument(
        fmt::format("unix socket path '{}': want 1..{} bytes", path, sizeof(addr.sun_path) - 1));
  }
  std::copy(path.begin(), path.end(), addr.sun_path);
  return addr;
}

int PollMillis(const Clock& clock, MonoTime deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock.MonotonicNow());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT32_MAX));
}

enum class Wait { kReady, kTimedOut, kStopped };

// Waits for `events` on `fd` until `deadline`, or for `stop_fd` (-1: none).
Result<Wait> WaitFor(int fd, short events, int stop_fd, const Clock& clock, MonoTime deadline) {
  while (true) {
    pollfd fds[2] = {{.fd = fd, .events = events, .revents = 0},
                     {.fd = stop_fd, .events = POLLIN, .revents = 0}};
    const int ms = PollMillis(clock, deadline);
    const int n = ::poll(fds, stop_fd >= 0 ? 2 : 1, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "poll");
    }
    if (stop_fd >= 0 && fds[1].revents != 0) return Wait::kStopped;
    if (fds[0].revents != 0) return Wait::kReady;  // errors and hang-ups surface in the next call
    if (ms == 0) return Wait::kTimedOut;
  }
}

// Sends all of `data` on the non-blocking `fd` by `deadline`.
Status SendAll(int fd, std::string_view data, int stop_fd, const Clock& clock, MonoTime deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return Status::FromErrno(errno, "send");
    QCLOUD_ASSIGN_OR_RETURN(Wait w, WaitFor(fd, POLLOUT, stop_fd, clock, deadline));
    if (w == Wait::kTimedOut) return Status(Errc::kTimedOut, "send: the peer does not read");
    if (w == Wait::kStopped) return Status(Errc::kUnavailable, "stopped");
  }
  return Status::Ok();
}

}  // namespace

std::string RunAdminCommand(Store& store, std::string_view line) {
  std::string out;
  Status s = Run(store, line, out);
  // A failed command's partial listing would read as data; drop it.
  if (!s.ok()) out.clear();
  out += FinalLine(s);
  return out;
}

Result<AdminReply> ParseAdminReply(std::string_view reply) {
  if (reply.empty() || reply.back() != '\n')
    return Status(Errc::kProtocolError, "admin reply: no final line");
  const std::string_view body = reply.substr(0, reply.size() - 1);
  const size_t last = body.rfind('\n');
  const std::string_view final_line = last == std::string_view::npos ? body : body.substr(last + 1);
  const std::string_view data =
      last == std::string_view::npos ? std::string_view() : reply.substr(0, last + 1);
  if (!IsFinalLine(final_line)) return Status(Errc::kProtocolError, "admin reply: no final line");
  for (size_t i = 0; i < data.size();) {
    const size_t end = data.find('\n', i);
    const std::string_view line = data.substr(i, end - i);
    if (line.find('\t') == std::string_view::npos) {
      return Status(Errc::kProtocolError, "admin reply: a data line without a tab");
    }
    i = end + 1;
  }
  AdminReply out{.data = std::string(data), .status = Status::Ok()};
  if (final_line != kOkLine) {
    const std::string_view rest = final_line.substr(kErrPrefix.size());
    const size_t space = rest.find(' ');
    const std::string_view name = rest.substr(0, space);
    if (name.empty()) return Status(Errc::kProtocolError, "admin reply: ERR without a code");
    out.status = StatusFromName(
        name, space == std::string_view::npos ? "" : std::string(rest.substr(space + 1)));
  }
  return out;
}

Result<std::string> SendAdminCommand(const std::string& socket_path, std::string_view line,
                                     std::chrono::milliseconds timeout) {
  if (line.size() > kMaxAdminLineBytes) {
    return InvalidArgument(fmt::format("request longer than {} bytes", kMaxAdminLineBytes));
  }
  if (line.find('\n') != std::string_view::npos) return InvalidArgument("a request is one line");
  QCLOUD_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));
  const Clock& clock = RealClock();
  const MonoTime deadline = clock.MonotonicNow() + timeout;

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Status(Errc::kUnavailable, fmt::format("no admin server at {}", socket_path));
    }
    // A unix socket's connect does not go on in the background: EAGAIN is
    // a full backlog, the server busy.
    if (err == EAGAIN)
      return Status(Errc::kUnavailable, fmt::format("the admin server at {} is busy", socket_path));
    return Status::FromErrno(err, "connect " + socket_path);
  }
  std::string request(line);
  request += '\n';
  Status sent = SendAll(fd.get(), request, -1, clock, deadline);
  if (sent.code() == Errc::kTimedOut)
    return Status(Errc::kTimedOut, "admin server: no room for the request");
  QCLOUD_RETURN_IF_ERROR(sent);

  std::string reply;
  size_t line_start = 0;  // of the line being received
  while (true) {
    // Look for the final line among the complete lines received.
    for (size_t nl; (nl = reply.find('\n', line_start)) != std::string::npos; line_start = nl + 1) {
      if (IsFinalLine(std::string_view(reply).substr(line_start, nl - line_start))) {
        reply.resize(nl + 1);
        return reply;
      }
    }
    if (reply.size() >= kMaxAdminReplyBytes) {
      return Status(Errc::kTooLarge, fmt::format("admin reply over {} bytes", kMaxAdminReplyBytes));
    }
    char buf[16384];
    const size_t want = std::min(sizeof(buf), kMaxAdminReplyBytes - reply.size());
    const ssize_t n = ::recv(fd.get(), buf, want, 0);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0)
      return Status(Errc::kProtocolError,
                    "admin server closed the connection before the final line");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return Status::FromErrno(errno, "recv " + socket_path);
    QCLOUD_ASSIGN_OR_RETURN(Wait w, WaitFor(fd.get(), POLLIN, -1, clock, deadline));
    if (w == Wait::kTimedOut) {
      return Status(Errc::kTimedOut,
                    fmt::format("no reply from {} within {} ms", socket_path, timeout.count()));
    }
  }
}

// ---- AdminServer ----------------------------------------------------------------

struct AdminServer::Impl {
  Store* store = nullptr;
  std::string path;
  AdminServerOptions options;
  const Clock* clock = nullptr;
  Fd stop_fd;  // eventfd: readable once Stop() was called
  // The socket file we bound, to remove it at the stop only if it is ours.
  dev_t dev = 0;
  ino_t ino = 0;

  std::mutex mu;
  Fd listen_fd;          // guarded by mu while Serve() does not run
  bool stopped = false;  // guarded by mu
  bool serving = false;  // guarded by mu

  Status Loop();
  void ServeConnection(int fd);
  // Called with mu held.
  void UnlinkIfOurs() {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
      ::unlink(path.c_str());
  }
};

Result<std::unique_ptr<AdminServer>> AdminServer::Open(Store& store, std::string socket_path,
                                                       const AdminServerOptions& options) {
  QCLOUD_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));
  if (options.io_timeout.count() <= 0)
    return InvalidArgument("admin server: io_timeout must be > 0");
  auto impl = std::make_unique<Impl>();
  impl->store = &store;
  impl->path = socket_path;
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();

  // A socket file left by a server that died is replaced; one a live server
  // accepts on, or anything that is not a socket, is not ours to remove.
  struct stat st {};
  if (::lstat(socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status(Errc::kAlreadyExists,
                    fmt::format("{} exists and is not a socket", socket_path));
    }
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (probe.get() < 0) return Status::FromErrno(errno, "socket");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
        errno == EAGAIN) {
      return Status(Errc::kAlreadyExists,
                    fmt::format("an admin server already listens on {}", socket_path));
    }
    if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "unlink stale " + socket_path);
    }
  }

  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Status::FromErrno(errno, "socket");
  // The file takes the socket inode's mode at bind (less the umask) on
  // Linux, so 0600 holds from the first instant; the chmod covers systems
  // that differ. Nobody can connect before listen() anyway.
  ::fchmod(fd.get(), S_IRUSR | S_IWUSR);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno(errno, "bind " + socket_path);
  }
  if (::chmod(socket_path.c_str(), S_IRUSR | S_IWUSR) != 0 ||
      ::lstat(socket_path.c_str(), &st) != 0) {
    Status s = Status::FromErrno(errno, "chmod " + socket_path);
    ::unlink(socket_path.c_str());
    return s;
  }
  impl->dev = st.st_dev;
  impl->ino = st.st_ino;
  constexpr int kBacklog = 16;  // clients wait here while one is served
  if (::listen(fd.get(), kBacklog) != 0) {
    Status s = Status::FromErrno(errno, "listen " + socket_path);
    ::unlink(socket_path.c_str());
    return s;
  }
  impl->stop_fd = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (impl->stop_fd.get() < 0) {
    Status s = Status::FromErrno(errno, "eventfd");
    ::unlink(socket_path.c_str());
    return s;
  }
  impl->listen_fd = std::move(fd);
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

const std::string& AdminServer::socket_path() const noexcept { return impl_->path; }

void AdminServer::Stop() {
  std::lock_guard lock(impl_->mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(impl_->stop_fd.get(), &one, sizeof(one));
  impl_->UnlinkIfOurs();
  // A Serve() under way polls the listening socket: it closes it on its way
  // out, so no other thread's descriptor takes its number mid-poll.
  if (!impl_->serving) impl_->listen_fd.Reset();
}

Status AdminServer::Serve() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) return Status::Ok();
    QCLOUD_CHECK_MSG(!impl_->serving, "AdminServer::Serve called twice");
    impl_->serving = true;
  }
  Status s = impl_->Loop();
  std::lock_guard lock(impl_->mu);
  impl_->serving = false;
  impl_->listen_fd.Reset();
  if (!impl_->stopped) {  // the socket failed: nobody will answer there
    impl_->stopped = true;
    impl_->UnlinkIfOurs();
  }
  return s;
}

Status AdminServer::Impl::Loop() {
  while (true) {
    pollfd fds[2] = {{.fd = listen_fd.get(), .events = POLLIN, .revents = 0},
                     {.fd = stop_fd.get(), .events = POLLIN, .revents = 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "poll " + path);
    }
    if (fds[1].revents != 0) return Status::Ok();
    if ((fds[0].revents & (POLLERR | POLLNVAL)) != 0)
      return IoError("admin socket " + path + " failed");
    Fd conn(::accept4(listen_fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn.get() >= 0) {
      ServeConnection(conn.get());
      continue;
    }
    switch (errno) {
      case EAGAIN:
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
        break;  // that client is gone; the next
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: {
        // Out of descriptors or memory: the pending client stays in the
        // backlog; try again shortly rather than spin on it.
        constexpr auto kBackoff = std::chrono::milliseconds(100);
        QCLOUD_ASSIGN_OR_RETURN(
            Wait w, WaitFor(stop_fd.get(), POLLIN, -1, *clock, clock->MonotonicNow() + kBackoff));
        if (w == Wait::kReady) return Status::Ok();
        break;
      }
      default:
        return Status::FromErrno(errno, "accept " + path);
    }
  }
}

void AdminServer::Impl::ServeConnection(int fd) {
  // One line: at most kMaxAdminLineBytes and its '\n'. What follows the
  // line is never read (one request per connection).
  constexpr size_t kMaxRequest = kMaxAdminLineBytes + 1;
  std::string request;
  MonoTime deadline = clock->MonotonicNow() + options.io_timeout;
  while (request.find('\n') == std::string::npos && request.size() < kMaxRequest) {
    char buf[kMaxRequest];
    const ssize_t n = ::recv(fd, buf, kMaxRequest - request.size(), 0);
    if (n > 0) {
      request.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      if (request.empty()) return;  // connected and left: nothing to answer
      break;                        // the line ends at the client's shutdown
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return;
    auto w = WaitFor(fd, POLLIN, stop_fd.get(), *clock, deadline);
    if (!w || *w == Wait::kStopped) return;
    if (*w == Wait::kTimedOut) {
      SendAll(fd, FinalLine(Status(Errc::kTimedOut, "no request line within the timeout")),
              stop_fd.get(), *clock,
              clock->MonotonicNow() + options.io_timeout)
          .ok();  // best effort: the client is closed either way
      return;
    }
  }
  std::string_view line = request;
  if (const size_t nl = line.find('\n'); nl != std::string_view::npos) line = line.substr(0, nl);
  if (line.ends_with('\r')) line.remove_suffix(1);  // telnet, nc -C
  // Over kMaxAdminLineBytes without a '\n': RunAdminCommand refuses it by
  // its length, as it would any other way it came.
  const std::string reply = RunAdminCommand(*store, line);
  deadline = clock->MonotonicNow() + options.io_timeout;
  SendAll(fd, reply, stop_fd.get(), *clock, deadline)
      .ok();  // a client that does not read is closed
}

}  // namespace qcloud::block
