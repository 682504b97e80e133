#pragma once

// Lifecycle: the life of a server process, the same for every qcloud
// program. A program registers what it runs and how it stops, then calls
// Run(), which returns when the process should exit:
//
//   auto life = Lifecycle::Open({.drain_timeout = 5s, .logger = &log}).value();
//   QCLOUD_RETURN_IF_ERROR(life->HandleSignals());  // first, before any thread
//   for (unsigned i = 0; i < n; ++i)
//     life->Spawn(fmt::format("worker {}", i), [&, i] { return server->Serve(i); });
//   life->Every("maintain", 1s, [&] { return store->Maintain(); });
//   life->OnStop("server", [&] { server->Stop(); return Status::Ok(); });
//   life->OnDrained("save", [&] { return store->SinkAll(); });
//   Status s = life->Run();  // until SIGINT/SIGTERM, Stop() or a worker fails
//
// Order of a stop: periodic tasks end; the OnStop hooks run in the order they
// were added (close listeners first, then what they feed); the workers are
// joined, for up to drain_timeout; then the OnDrained hooks run in order.
//
// Libraries never use this class: it owns signals and threads, which belong
// to the program. Nothing here starts a thread before Run(), and no signal
// disposition changes before HandleSignals().
//
// Periodic tasks run on the thread that called Run(), one at a time, on the
// injected Clock: with a ManualClock a test calls RunDue() after Advance()
// and sees exactly the tasks that became due, without sleeping.
//
// Errors: Run() returns the first failure of a worker (which also begins the
// stop: one failing worker stops the process), of a stop or drained hook,
// or kTimedOut when workers outlived the drain deadline; those workers are
// then detached (they keep what they share with the Lifecycle alive, but not
// what their function captured) and the program should exit at once. A periodic task's
// failure is logged as a warning and the task keeps its schedule.
//
// Thread safety: Stop() and stopping() from any thread, any time. The other
// calls before Run(), from one thread.

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {

struct LifecycleOptions {
  // Time source for periodic tasks and the drain deadline. Not owned; must
  // outlive the Lifecycle. Null = RealClock().
  Clock* clock = nullptr;
  // After a stop begins, how long workers get to return before Run() gives
  // up on them (kTimedOut). Default 5 s.
  std::chrono::milliseconds drain_timeout{5000};
  // Where stop reasons and task failures go. Not owned; must outlive the
  // Lifecycle. Null = discard.
  Logger* logger = nullptr;
};

class QCLOUD_EXPORT Lifecycle {
 public:
  // Errors: kInvalidArgument for a negative drain_timeout; the eventfd
  // failure.
  static Result<std::unique_ptr<Lifecycle>> Open(const LifecycleOptions& options);
  // Stops and joins what Run() started, if Run() was not called to the end.
  ~Lifecycle();
  Lifecycle(const Lifecycle&) = delete;
  Lifecycle& operator=(const Lifecycle&) = delete;

  // SIGINT and SIGTERM begin a stop; SIGPIPE is ignored (a peer's reset is
  // an error of that connection, not of the process). Blocks SIGINT/SIGTERM
  // in the calling thread, so call it from main() before any thread starts:
  // threads inherit the mask and the signals reach Run() alone.
  Status HandleSignals();

  // A thread running `fn`, started by Run() (or at once if Run() is under
  // way). Its failure stops the process and is what Run() returns.
  void Spawn(std::string name, std::function<Status()> fn);
  // `fn` every `period` (> 0) from Run() on, first after one period.
  void Every(std::string name, std::chrono::milliseconds period, std::function<Status()> fn);
  void OnStop(std::string name, std::function<Status()> hook);
  void OnDrained(std::string name, std::function<Status()> hook);

  // Starts the workers and runs periodic tasks until a stop; then stops in
  // the order above. Call once.
  Status Run();
  // Begins a stop. Idempotent; any thread.
  void Stop();
  bool stopping() const noexcept;

  // Runs every periodic task due at the clock's current time and returns
  // the time the next one is due (MonoTime::max() when there is none). Run()
  // calls this; tests on a ManualClock call it directly.
  MonoTime RunDue();

 private:
  struct Impl;
  explicit Lifecycle(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud
