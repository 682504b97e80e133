#pragma once

// qcloud::block admin protocol — volume administration as one line of words
// in, text out, so `qcloud-blockd volume ...` works the same on a stopped
// server (it opens the Store and calls RunAdminCommand itself) and on a
// running one (the Store is locked by the server; the CLI sends the line to
// the server's AdminServer socket and prints what comes back):
//
//   auto server = AdminServer::Open(*store, data_dir + "/admin.sock").value();
//   std::thread t([&] { server->Serve().ok(); });
//   auto reply = SendAdminCommand(data_dir + "/admin.sock", "create vm1 10G", 5s);
//   auto parsed = ParseAdminReply(*reply);   // parsed->status: ok
//   server->Stop(); t.join();
//
// Request (version 1 of the protocol; a future change adds a command, never
// changes one): one line of at most kMaxAdminLineBytes bytes, no control
// bytes (0x00-0x1f, 0x7f), at most kMaxAdminWords words separated by spaces.
// The words are the CLI's:
//
//   create NAME SIZE              resize NAME SIZE          delete NAME
//   list                          snapshots [NAME]          copies
//   snapshot NAME SNAP            delete-snapshot NAME SNAP
//   rollback NAME SNAP            clone NAME SNAP NEW
//
// SIZE as ParseByteSize (qcloud/core/units.h) reads it: 10G, 512MiB, 4096.
// Names as Store checks them (store.h).
//
// Reply: zero or more data lines, then one final line; every line ends in
// '\n'. A data line holds at least one tab and no other control byte; the
// final line holds no control byte at all, so a reader knows the end
// without a length:
//
//   list        NAME\tSIZE\tallocated SIZE[\torigin VOLUME@SNAP]
//   snapshots   VOLUME@SNAP\tSIZE
//   copies      LOCATION\tHEALTH\tmissed N\trebuilt N[\tfailures N][\terror TEXT]
//   final       OK
//               ERR CODE MESSAGE
//
// SIZE in a reply is in the largest of B K M G T that divides it (10G,
// 4100K, 1 PiB as 1024T), so it reads back with ParseByteSize.
// CODE is the Status code's name: invalid_argument, not_found,
// already_exists, corruption, io_error, not_supported, resource_exhausted,
// out_of_range, aborted, unavailable, protocol_error, timed_out, too_large;
// errno_N for an OS error without one of those. MESSAGE is the Status's
// message; control bytes in any text from the store become '?'.
//
// Thread safety: RunAdminCommand, ParseAdminReply and SendAdminCommand from
// any thread (the Store's own rules apply); AdminServer as it says.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "qcloud/block/store.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::block {

inline constexpr size_t kMaxAdminLineBytes = 4096;               // a request, without its '\n'
inline constexpr size_t kMaxAdminWords = 8;                      // the longest command has 4
inline constexpr size_t kMaxAdminReplyBytes = size_t{64} << 20;  // what a client reads
// The server's socket in a data directory: <data_dir>/admin.sock.
inline constexpr char kAdminSocketName[] = "admin.sock";

// Runs one request `line` (without its '\n') on `store` and returns the
// reply. Never fails: a malformed line (empty, too long, control bytes, too
// many words, unknown command, wrong number of words, a bad size) and the
// store's errors are `ERR` lines.
QCLOUD_EXPORT std::string RunAdminCommand(Store& store, std::string_view line);

struct AdminReply {
  std::string data;  // the data lines, each with its '\n'
  Status status;     // OK: ok; ERR: the code by name, and the message
};

// Splits a reply into its data lines and the status of its final line (an
// unknown CODE becomes kIoError with the name in the message). Errors:
// kProtocolError when `reply` is not data lines then exactly one final line.
QCLOUD_EXPORT Result<AdminReply> ParseAdminReply(std::string_view reply);

// Client: connects to the AdminServer at `socket_path`, sends `line` and
// '\n', and returns the reply (data lines and the final line), at most
// kMaxAdminReplyBytes, all within `timeout` (the command's own run time
// included). Errors: kInvalidArgument (a line over kMaxAdminLineBytes or
// holding '\n', a path too long for a unix socket), kUnavailable (no server
// listens there), kTimedOut, kTooLarge, kProtocolError (the server closed
// before the final line), kIoError.
QCLOUD_EXPORT Result<std::string> SendAdminCommand(const std::string& socket_path,
                                                   std::string_view line,
                                                   std::chrono::milliseconds timeout);

struct AdminServerOptions {
  // How long a client gets to send its line, and then to read the reply
  // (each). Default 5 s.
  std::chrono::milliseconds io_timeout{5000};
  // Time source for those deadlines. Not owned; must outlive the server.
  // Null = RealClock().
  Clock* clock = nullptr;
};

// Server: a unix stream socket that answers one request line per
// connection with RunAdminCommand, one connection at a time (commands are
// short, and volume operations serialize in the Store anyway); the
// connection is closed after the reply. A line longer than
// kMaxAdminLineBytes is answered `ERR invalid_argument` without reading
// the rest; a client silent past io_timeout is closed. A line that ends at
// the client's shutdown instead of '\n' is served too (printf list | nc -U).
//
// Access is the socket file's: mode 0600, so the server's user (and root)
// alone. Owns no thread: the caller runs Serve() on one of its own.
//
// Thread safety: Serve() on one thread, once; Stop() from any thread, any
// number of times. Destroy after Serve() has returned (or was never called).
class QCLOUD_EXPORT AdminServer {
 public:
  // Binds `socket_path` (mode 0600) and listens. A socket file already
  // there that nobody accepts on (a server killed -9) is replaced. `store`
  // is not owned and must outlive the server. Errors: kInvalidArgument (a
  // path too long for a unix socket), kAlreadyExists (a live server there,
  // or a file that is not a socket), kIoError.
  static Result<std::unique_ptr<AdminServer>> Open(Store& store, std::string socket_path,
                                                   const AdminServerOptions& options = {});
  ~AdminServer();  // Stop()s.
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Accepts and answers connections until Stop(); returns Ok then (at once
  // if Stop() came first). A client's failure closes that connection only.
  // Errors: the listening socket's failure (kIoError or errno).
  Status Serve();
  // Makes Serve() return (a connection being read or written is closed; a
  // command the Store is running finishes first), closes the socket and
  // removes its file, if it is still ours. Idempotent.
  void Stop();
  const std::string& socket_path() const noexcept;

 private:
  struct Impl;
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::block
