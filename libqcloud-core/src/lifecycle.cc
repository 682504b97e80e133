#include "qcloud/core/lifecycle.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace qcloud {

namespace {
// How often a join waiting on a ManualClock deadline looks at the clock.
constexpr auto kJoinPoll = std::chrono::milliseconds(20);
// The longest one wait of Run() may block: bounds the delay with which a
// clock that jumps (ManualClock in a test) is noticed.
constexpr int kMaxWaitMs = 1000;
}  // namespace

// What a worker thread touches. Shared with the threads, so that a worker
// detached at the drain deadline never reaches freed memory when it ends.
struct LifecycleShared {
  std::mutex mu;
  std::condition_variable cv;
  Status first_error;  // guarded by mu
  std::atomic<bool> stopping{false};
  int wake_fd = -1;
  Logger* logger = nullptr;

  ~LifecycleShared() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
  void Log(LogLevel level, const std::string& line) {
    if (logger->Enabled(level)) logger->Log(level, line);
  }
  void Fail(const Status& s) {
    std::lock_guard lock(mu);
    if (first_error.ok()) first_error = s;
  }
  void BeginStop() {
    if (!stopping.exchange(true, std::memory_order_acq_rel)) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd, &one, sizeof one);
    }
  }
};

struct Lifecycle::Impl {
  struct Named {
    std::string name;
    std::function<Status()> fn;
  };
  struct Worker {
    std::string name;
    std::function<Status()> fn;
    std::thread thread;
    bool done = false;  // guarded by LifecycleShared::mu
  };
  struct Task {
    std::string name;
    std::chrono::milliseconds period;
    std::function<Status()> fn;
    MonoTime due;
  };

  LifecycleOptions options;
  Clock* clock = nullptr;
  std::shared_ptr<LifecycleShared> sh = std::make_shared<LifecycleShared>();
  int signal_fd = -1;
  bool running = false;
  bool finished = false;
  std::vector<std::shared_ptr<Worker>> workers;
  std::vector<Task> tasks;
  std::vector<Named> stop_hooks;
  std::vector<Named> drained_hooks;

  ~Impl() {
    if (signal_fd >= 0) ::close(signal_fd);
  }

  void StartWorker(const std::shared_ptr<Worker>& w) {
    w->thread = std::thread([sh = sh, w] {
      Status s = w->fn();
      if (!s.ok()) {
        s = s.WithContext(w->name);
        sh->Log(LogLevel::kError, fmt::format("{}: stopping", s.ToString()));
        sh->Fail(s);
        sh->BeginStop();
      }
      {
        std::lock_guard lock(sh->mu);
        w->done = true;
      }
      sh->cv.notify_all();
    });
  }

  void RunHooks(std::vector<Named>& hooks) {
    for (auto& h : hooks) {
      Status s = h.fn();
      if (!s.ok()) {
        s = s.WithContext(h.name);
        sh->Log(LogLevel::kError, s.ToString());
        sh->Fail(s);
      }
    }
  }

  // Joins the workers that finish by the drain deadline. True when all did.
  bool JoinWorkers() {
    const MonoTime deadline = clock->MonotonicNow() + options.drain_timeout;
    std::unique_lock lock(sh->mu);
    auto all_done = [&] {
      return std::all_of(workers.begin(), workers.end(), [](auto& w) { return w->done; });
    };
    while (!all_done() && clock->MonotonicNow() < deadline) sh->cv.wait_for(lock, kJoinPoll);
    bool all = true;
    for (auto& w : workers) {
      if (!w->thread.joinable()) continue;
      if (w->done) {
        w->thread.join();
      } else {
        all = false;
        sh->Log(LogLevel::kError, fmt::format("{} still running at the drain deadline", w->name));
        w->thread.detach();
      }
    }
    return all;
  }

  void WaitForEvent(MonoTime next) {
    int timeout_ms = kMaxWaitMs;
    if (next != MonoTime::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - clock->MonotonicNow());
      timeout_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, kMaxWaitMs));
    }
    pollfd fds[2] = {{sh->wake_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    const int n = ::poll(fds, signal_fd >= 0 ? 2 : 1, timeout_ms);
    if (n <= 0) return;  // timeout or EINTR: the caller looks again
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(sh->wake_fd, &v, sizeof v);
    }
    if (signal_fd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(signal_fd, &info, sizeof info) == sizeof info) {
        sh->Log(LogLevel::kInfo, fmt::format("signal {} ({}): stopping", info.ssi_signo,
                                             strsignal(static_cast<int>(info.ssi_signo))));
        sh->BeginStop();
      }
    }
  }
};

Lifecycle::Lifecycle(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Lifecycle>> Lifecycle::Open(const LifecycleOptions& options) {
  if (options.drain_timeout.count() < 0) return InvalidArgument("negative drain_timeout");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->sh->logger = options.logger != nullptr ? options.logger : &DiscardLogger();
  impl->sh->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->sh->wake_fd < 0) return Status::FromErrno(errno, "eventfd");
  return std::unique_ptr<Lifecycle>(new Lifecycle(std::move(impl)));
}

Lifecycle::~Lifecycle() {
  if (impl_->running && !impl_->finished) {
    Stop();
    for (auto& w : impl_->workers) {
      if (w->thread.joinable()) w->thread.join();
    }
  }
}

Status Lifecycle::HandleSignals() {
  if (impl_->signal_fd >= 0) return Status::Ok();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return Status::FromErrno(rc, "pthread_sigmask");
  }
  ::signal(SIGPIPE, SIG_IGN);
  impl_->signal_fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (impl_->signal_fd < 0) return Status::FromErrno(errno, "signalfd");
  return Status::Ok();
}

void Lifecycle::Spawn(std::string name, std::function<Status()> fn) {
  auto w = std::make_shared<Impl::Worker>();
  w->name = std::move(name);
  w->fn = std::move(fn);
  if (impl_->running) impl_->StartWorker(w);
  impl_->workers.push_back(std::move(w));
}

void Lifecycle::Every(std::string name, std::chrono::milliseconds period,
                      std::function<Status()> fn) {
  period = std::max(period, std::chrono::milliseconds(1));
  impl_->tasks.push_back({std::move(name), period, std::move(fn),
                          impl_->clock->MonotonicNow() + period});
}

void Lifecycle::OnStop(std::string name, std::function<Status()> hook) {
  impl_->stop_hooks.push_back({std::move(name), std::move(hook)});
}

void Lifecycle::OnDrained(std::string name, std::function<Status()> hook) {
  impl_->drained_hooks.push_back({std::move(name), std::move(hook)});
}

void Lifecycle::Stop() { impl_->sh->BeginStop(); }

bool Lifecycle::stopping() const noexcept {
  return impl_->sh->stopping.load(std::memory_order_acquire);
}

MonoTime Lifecycle::RunDue() {
  const MonoTime now = impl_->clock->MonotonicNow();
  MonoTime next = MonoTime::max();
  for (auto& t : impl_->tasks) {
    if (stopping()) return next;
    if (t.due <= now) {
      if (Status s = t.fn(); !s.ok()) {
        impl_->sh->Log(LogLevel::kWarning, s.WithContext(t.name).ToString());
      }
      // The next run is a period after this one was due, skipping the runs
      // a slow task (or a clock jump) missed instead of running them back to back.
      t.due += t.period * ((now - t.due) / t.period + 1);
    }
    next = std::min(next, t.due);
  }
  return next;
}

Status Lifecycle::Run() {
  Impl& im = *impl_;
  if (im.running) return Status(Errc::kAborted, "Lifecycle::Run called twice");
  im.running = true;
  for (auto& w : im.workers) im.StartWorker(w);
  while (!stopping()) im.WaitForEvent(RunDue());
  im.RunHooks(im.stop_hooks);
  const bool joined = im.JoinWorkers();
  im.finished = true;
  if (!joined) return Status(Errc::kTimedOut, "workers outlived the drain deadline");
  im.RunHooks(im.drained_hooks);
  std::lock_guard lock(im.sh->mu);
  return im.sh->first_error;
}

}  // namespace qcloud
