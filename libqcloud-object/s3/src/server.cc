// S3Server: HTTP/1.1 framing as a StreamSession on core's connection loop
// (io_uring or epoll). The only Beast translation unit of the S3 front end:
// Beast's parser reads request heads and bodies (Content-Length or
// chunked, header limits); responses are written by hand, the head and
// then the object a chunk at a time as the client takes it.
#include "qcloud/object/s3_server.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <vector>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/optional.hpp>
#include <fmt/format.h>

#include "qcloud/core/worker_pool.h"
#include "s3/service.h"
#include "s3/xml.h"

namespace qcloud::object {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr size_t kHeaderLimit = 16 * 1024;
constexpr size_t kOutputHighWater = 4 << 20;    // stop reading while this much is unsent
constexpr size_t kReadBuffer = 128 * 1024;
constexpr uint64_t kDiscardBody = 1 << 20;      // unused bodies up to this are read, not cut

std::string_view Reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

// Today's Date header, recomputed at most once a second per thread.
const std::string& DateHeader(Clock& clock) {
  thread_local int64_t second = -1;
  thread_local std::string text;
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         clock.WallNow().time_since_epoch()).count();
  if (ms / 1000 != second) {
    second = ms / 1000;
    text = "Date: " + s3::HttpTime(ms) + "\r\n";
  }
  return text;
}


// Threads that run the final commit of requests with a body (a PUT's
// Finish: chunk sync, index transaction) while the loops serve other
// connections; concurrent commits then share their fsyncs (the index's
// group commit). Jobs left at shutdown are run before the threads end.
using Committer = WorkerPool;

// A commit handed to the Committer: the call, and its answer once made.
struct PendingCommit {
  std::unique_ptr<s3::Call> call;
  std::mutex mu;
  std::optional<s3::HttpResponse> response;
  std::shared_ptr<SessionWaker> waker;
};

class S3Session;

// Beast's HTTP/1.1 parser with our own callbacks: fields go straight into
// the request (no field container), body bytes straight into the call (no
// body buffer). Used for one request, then replaced.
class RequestParser final : public http::basic_parser<true> {
 public:
  explicit RequestParser(S3Session& session) : session_(session) {
    header_limit(kHeaderLimit);
    body_limit(std::numeric_limits<uint64_t>::max());
  }

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target, int,
                       beast::error_code&) override;
  void on_response_impl(int, beast::string_view, int, beast::error_code& ec) override {
    ec = http::error::bad_method;  // requests only
  }
  void on_field_impl(http::field name, beast::string_view name_string, beast::string_view value,
                     beast::error_code&) override;
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<uint64_t>&, beast::error_code&) override {}
  size_t on_body_impl(beast::string_view body, beast::error_code& ec) override;
  void on_chunk_header_impl(uint64_t, beast::string_view, beast::error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, beast::string_view body, beast::error_code& ec) override {
    return on_body_impl(body, ec);
  }
  void on_finish_impl(beast::error_code&) override {}

  S3Session& session_;
};

class S3Session final : public StreamSession {
 public:
  S3Session(s3::Service& service, Clock& clock, Committer* committer, uint64_t offload_min)
      : service_(service), clock_(clock), committer_(committer), offload_min_(offload_min) {
    service_.counters().connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~S3Session() override { service_.counters().connections.fetch_sub(1, std::memory_order_relaxed); }

  void Attach(std::shared_ptr<SessionWaker> waker) override { waker_ = std::move(waker); }

  size_t Process(ByteView in, Buffer& out) override {
    size_t used = 0;
    if (commit_) {
      // Woken by the committer, or called for input that must wait.
      std::optional<s3::HttpResponse> r;
      {
        std::lock_guard lock(commit_->mu);
        r = std::move(commit_->response);
      }
      if (!r) return 0;
      commit_.reset();
      Respond(std::move(*r), out);
    }
    while (!closing_ && !commit_) {
      if (streaming_) {
        // A GET in progress: the next piece once the last one is on its way.
        if (out.size() >= kOutputHighWater) return used;
        StreamPiece(out);
        if (streaming_) return used;
        FinishResponse();
        continue;
      }
      if (!parser_) StartRequest();
      const ByteView rest = in.subview(used, in.size() - used);
      if (rest.empty() && !parser_->is_done()) return used;
      const bool had_header = parser_->is_header_done();
      beast::error_code ec;
      const size_t n = rest.empty() ? 0 : parser_->put(boost::asio::buffer(rest.data(), rest.size()), ec);
      used += n;
      if (body_failed_) {
        // The call refused the body (too large, bad chunk signature, disk
        // error): it has its answer; the rest of the body cannot be framed.
        s3::HttpResponse r = call_->Finish();
        r.close = true;
        call_.reset();
        Respond(std::move(r), out);
        continue;
      }
      if (ec == http::error::need_more) return used;
      if (ec) {
        BadRequest(ec, out);
        return used;
      }
      if (!had_header && parser_->is_header_done()) {
        if (!OnHeader(out)) continue;  // answered without a body
      }
      if (parser_->is_done()) {
        OnBodyDone(out);
        continue;
      }
      if (n == 0) return used;  // nothing more to take from `in`
    }
    return used;
  }

  bool closing() const noexcept override { return closing_; }
  bool blocked(const Buffer& out) const noexcept override {
    return streaming_ || commit_ != nullptr || out.size() >= kOutputHighWater;
  }
  bool producing() const noexcept override { return streaming_; }
  bool busy() const noexcept override { return commit_ != nullptr; }

  // RequestParser's callbacks.
  void OnRequestLine(beast::string_view method, beast::string_view target) {
    request_.method.assign(method.data(), method.size());
    request_.target.assign(target.data(), target.size());
  }
  void OnField(http::field name, beast::string_view name_string, beast::string_view value) {
    std::string n = AsciiLower(std::string_view(name_string.data(), name_string.size()));
    request_.headers.emplace_back(std::move(n), std::string(value.data(), value.size()));
    if (name == http::field::expect && beast::iequals(value, "100-continue")) expect_continue_ = true;
  }
  size_t OnBody(beast::string_view body, beast::error_code& ec) {
    if (!call_) return body.size();  // answered already; never reached (the parse stops)
    if (Status s = call_->Feed(ByteView(std::string_view(body.data(), body.size()))); !s.ok()) {
      body_failed_ = true;
      ec = http::error::body_limit;  // stops the parse; Process answers with the call's error
    }
    return body.size();
  }

 private:
  void StartRequest() {
    parser_.emplace(*this);
    request_ = {};
    request_.headers.reserve(16);
    expect_continue_ = false;
    body_failed_ = false;
  }

  // The head is in: starts the call. False when it was answered at once.
  bool OnHeader(Buffer& out) {
    started_ = std::chrono::steady_clock::now();
    keep_alive_ = parser_->keep_alive();
    call_ = service_.Begin(std::move(request_));
    op_ = call_->operation();
    if (!call_->wants_body()) {
      s3::HttpResponse r = call_->Finish();
      call_.reset();
      if (!parser_->is_done()) {
        const auto length = parser_->content_length();
        if (length && *length <= kDiscardBody && !expect_continue_) {
          // A small body we will not use is read and dropped, so that the
          // client reads our answer instead of a reset connection, and the
          // connection stays open.
          discarded_ = std::move(r);
          return true;
        }
        r.close = true;  // a body we will not read cannot be skipped: close after
      }
      Respond(std::move(r), out);
      return false;
    }
    if (expect_continue_ && !parser_->is_done()) {
      out.Append(ByteView(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")));
    }
    return true;
  }

  void OnBodyDone(Buffer& out) {
    if (discarded_) {
      s3::HttpResponse r = std::move(*discarded_);
      discarded_.reset();
      return Respond(std::move(r), out);
    }
    if (committer_ != nullptr && waker_ && call_->received() >= offload_min_) {
      // The commit runs elsewhere; this connection waits (not read) and is
      // woken with the answer.
      commit_ = std::make_shared<PendingCommit>();
      commit_->call = std::move(call_);
      commit_->waker = waker_;
      committer_->Post([job = commit_] {
        s3::HttpResponse r = job->call->Finish();
        job->call.reset();
        {
          std::lock_guard lock(job->mu);
          job->response = std::move(r);
        }
        job->waker->Wake();
      });
      return;
    }
    s3::HttpResponse r = call_->Finish();
    call_.reset();
    Respond(std::move(r), out);
  }

  void BadRequest(const beast::error_code& ec, Buffer& out) {
    call_.reset();  // a body cut short or malformed: nothing it began becomes visible
    const std::string id = service_.NextRequestId();
    s3::HttpResponse r = ec == http::error::header_limit
                             ? service_.Error("RequestHeaderSectionTooLarge", "", "", id, false)
                             : service_.Error("InvalidRequest", "malformed HTTP request: " + ec.message(), "", id, false);
    r.close = true;
    op_ = "BadRequest";
    if (started_ == std::chrono::steady_clock::time_point{}) started_ = std::chrono::steady_clock::now();
    Respond(std::move(r), out);
  }

  void Respond(s3::HttpResponse r, Buffer& out) {
    response_ = std::move(r);
    parser_.reset();
    if (!keep_alive_) response_.close = true;
    const bool stream = response_.object && !response_.head && response_.length > 0;
    if (stream) {
      next_ = response_.offset;
      end_ = response_.offset + response_.length;
      // The first piece before the head: an error there is still an answer.
      auto first = ReadPiece();
      if (!first.ok()) {
        const Status& s = first.status();
        response_ = service_.Error(s == qcloud::Errc::kNotFound ? "NoSuchKey" : "InternalError", s.message(), "",
                                   service_.NextRequestId(), false);
        response_.close = !keep_alive_;
        WriteHead(out);
        out.Append(ByteView(response_.body));
        return FinishResponse();
      }
      WriteHead(out);
      out.Append(first->readable());
      if (next_ < end_) {
        streaming_ = true;
        return;
      }
      return FinishResponse();
    }
    WriteHead(out);
    if (!response_.object && !response_.head) out.Append(ByteView(response_.body));
    FinishResponse();
  }

  void StreamPiece(Buffer& out) {
    auto piece = ReadPiece();
    if (!piece.ok() || piece->size() == 0) {
      // The head is out: all that is left is to cut the connection short.
      streaming_ = false;
      closing_ = true;
      response_.close = true;
      return;
    }
    out.Append(piece->readable());
    if (next_ >= end_) streaming_ = false;
  }

  Result<Buffer> ReadPiece() {
    // To the end of the chunk that holds next_: one chunk read per piece.
    uint64_t at = 0, piece_end = end_;
    for (const ChunkRef& ch : response_.object->chunks) {
      if (at + ch.length > next_) {
        piece_end = std::min(end_, at + ch.length);
        break;
      }
      at += ch.length;
    }
    auto data = service_.store().Read(*response_.object, next_, piece_end - next_);
    if (data.ok()) {
      next_ += data->size();
      service_.counters().bytes_out.fetch_add(data->size(), std::memory_order_relaxed);
    }
    return data;
  }

  void WriteHead(Buffer& out) {
    const s3::HttpResponse& r = response_;
    std::string h;
    h.reserve(512);
    h += "HTTP/1.1 ";
    h += std::to_string(r.status);
    h += ' ';
    h += Reason(r.status);
    h += "\r\nServer: qcloud-cosd\r\n";
    h += DateHeader(clock_);
    h += r.headers;
    if (r.status != 204 && r.status != 304) {
      h += "Content-Length: ";
      h += std::to_string(r.content_length());
      h += "\r\n";
    }
    if (r.close) h += "Connection: close\r\n";
    h += "\r\n";
    out.Append(ByteView(h));
  }

  void FinishResponse() {
    auto& c = service_.counters();
    if (response_.status >= 400) c.errors.fetch_add(1, std::memory_order_relaxed);
    // A connection mostly repeats one operation: its last children are kept.
    if (c.by_op != nullptr) {
      if (counted_op_ != op_ || counted_status_ != response_.status) {
        counter_ = &c.by_op->WithLabels({op_, std::to_string(response_.status)});
        histogram_ = c.latency != nullptr ? &c.latency->WithLabels({op_}) : nullptr;
        counted_op_ = op_;
        counted_status_ = response_.status;
      }
      counter_->Increment();
      if (histogram_ != nullptr) {
        histogram_->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      }
    }
    if (response_.close) closing_ = true;
    response_ = {};
    started_ = {};
  }

  s3::Service& service_;
  Clock& clock_;
  Committer* committer_;
  uint64_t offload_min_ = 0;  // bodies smaller than this commit on the loop
  std::shared_ptr<SessionWaker> waker_;
  std::shared_ptr<PendingCommit> commit_;  // a commit in flight on the Committer
  std::optional<s3::HttpResponse> discarded_;  // answered; its small body is being read and dropped
  std::optional<RequestParser> parser_;
  s3::HttpRequest request_;
  bool expect_continue_ = false;
  bool body_failed_ = false;
  std::unique_ptr<s3::Call> call_;
  s3::HttpResponse response_;
  uint64_t next_ = 0, end_ = 0;
  bool keep_alive_ = true;
  bool streaming_ = false;
  bool closing_ = false;
  std::string op_;
  std::chrono::steady_clock::time_point started_{};
  std::string counted_op_;
  int counted_status_ = 0;
  Counter* counter_ = nullptr;
  Histogram* histogram_ = nullptr;
};

void RequestParser::on_request_impl(http::verb, beast::string_view method, beast::string_view target, int,
                                    beast::error_code&) {
  session_.OnRequestLine(method, target);
}

void RequestParser::on_field_impl(http::field name, beast::string_view name_string, beast::string_view value,
                                  beast::error_code&) {
  session_.OnField(name, name_string, value);
}

size_t RequestParser::on_body_impl(beast::string_view body, beast::error_code& ec) {
  return session_.OnBody(body, ec);
}

class Factory final : public SessionFactory {
 public:
  Factory(s3::Service& service, Clock& clock, Committer* committer, uint64_t offload_min)
      : service_(service), clock_(clock), committer_(committer), offload_min_(offload_min) {}
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<S3Session>(service_, clock_, committer_, offload_min_);
  }

 private:
  s3::Service& service_;
  Clock& clock_;
  Committer* committer_;
  uint64_t offload_min_ = 0;  // bodies smaller than this commit on the loop
};

}  // namespace

struct S3Server::Impl {
  ObjectStore* store = nullptr;
  S3ServerOptions options;
  s3::Counters counters;
  std::unique_ptr<s3::Service> service;
  std::unique_ptr<Factory> factory;
  std::unique_ptr<TcpServer> tcp;
  // Last: destroyed first, finishing its jobs while the service still lives.
  std::unique_ptr<Committer> committer;
};

S3Server::S3Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
S3Server::~S3Server() = default;

Result<std::unique_ptr<S3Server>> S3Server::Open(ObjectStore& store, const S3ServerOptions& options) {
  if (options.users.empty()) return InvalidArgument("S3ServerOptions::users is empty");
  std::set<std::string> keys;
  for (const S3User& u : options.users) {
    if (u.name.empty() || u.access_key.empty() || u.secret_key.empty()) {
      return InvalidArgument("a user needs a name, an access key and a secret key");
    }
    if (!keys.insert(u.access_key).second) {
      return InvalidArgument(fmt::format("access key {} is given twice", u.access_key));
    }
  }
  if (options.region.empty()) return InvalidArgument("S3ServerOptions::region is empty");
  auto impl = std::make_unique<Impl>();
  impl->store = &store;
  impl->options = options;
  Clock* clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->service = std::make_unique<s3::Service>(store, impl->options, impl->counters);
  if (options.commit_threads > 0) impl->committer = std::make_unique<Committer>(options.commit_threads);
  impl->factory = std::make_unique<Factory>(*impl->service, *clock, impl->committer.get(),
                                            options.commit_offload_min);
  const std::string busy = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
                           "<Message>Too many connections</Message></Error>";
  QCLOUD_ASSIGN_OR_RETURN(
      impl->tcp,
      TcpServer::Open(*impl->factory,
                      {.listen = options.listen,
                       .threads = options.threads,
                       .max_connections = options.max_connections,
                       .reject_message = fmt::format("HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                                     "application/xml\r\nConnection: close\r\nContent-Length: "
                                                     "{}\r\n\r\n{}", busy.size(), busy),
                       .read_buffer = kReadBuffer,
                       .max_input = kHeaderLimit + kReadBuffer * 2,
                       .drain_timeout = options.drain_timeout,
                       .idle_timeout = options.idle_timeout,
                       .backend = options.backend,
                       .clock = clock,
                       .logger = options.logger}));
  return std::unique_ptr<S3Server>(new S3Server(std::move(impl)));
}

const Endpoint& S3Server::address() const noexcept { return impl_->tcp->address(); }
unsigned S3Server::threads() const noexcept { return impl_->tcp->threads(); }
LoopBackend S3Server::backend() const noexcept { return impl_->tcp->backend(); }
Status S3Server::Serve(unsigned index) { return impl_->tcp->Serve(index); }
void S3Server::Stop() { impl_->tcp->Stop(); }

Status S3Server::ExportMetrics(MetricsRegistry& registry) {
  s3::Counters& c = impl_->counters;
  c.registry = &registry;
  QCLOUD_ASSIGN_OR_RETURN(c.by_op, registry.AddCounter("qcloud_object_requests_total",
                                                       "S3 requests answered, by operation and HTTP status",
                                                       {"op", "code"}));
  QCLOUD_ASSIGN_OR_RETURN(c.latency, registry.AddHistogram("qcloud_object_request_seconds",
                                                           "Time from a request's head to its response made",
                                                           LatencyBuckets(), {"op"}));
  struct Row {
    const char* name;
    const char* help;
    MetricType type;
    std::function<double()> read;
  };
  ObjectStore* store = impl_->store;
  const Row rows[] = {
      {"qcloud_object_request_body_bytes_total", "Request body bytes received", MetricType::kCounter,
       [&c] { return static_cast<double>(c.bytes_in.load()); }},
      {"qcloud_object_served_bytes_total", "Object bytes sent by GET", MetricType::kCounter,
       [&c] { return static_cast<double>(c.bytes_out.load()); }},
      {"qcloud_object_instant_uploads_total", "PUTs completed by instant upload, without their body",
       MetricType::kCounter, [&c] { return static_cast<double>(c.instant_uploads.load()); }},
      {"qcloud_object_connections", "Open S3 connections", MetricType::kGauge,
       [&c] { return static_cast<double>(c.connections.load()); }},
      {"qcloud_object_chunks", "Chunks in the CHX stores", MetricType::kGauge,
       [store] { return static_cast<double>(store->Stats().chunks); }},
      {"qcloud_object_chunk_bytes", "Live bytes in the CHX stores", MetricType::kGauge,
       [store] { return static_cast<double>(store->Stats().chunk_bytes); }},
      {"qcloud_object_collected_chunks_total", "Unreferenced chunks collected at open", MetricType::kCounter,
       [store] { return static_cast<double>(store->Stats().collected_chunks); }},
      {"qcloud_object_free_errors_total", "Chunks that could not be freed (retried at the next open)",
       MetricType::kCounter, [store] { return static_cast<double>(store->Stats().free_errors); }},
      {"qcloud_object_chunk_cache_hits_total", "Chunk reads served from the small-chunk cache",
       MetricType::kCounter, [store] { return static_cast<double>(store->Stats().cache_hits); }},
      {"qcloud_object_chunk_cache_misses_total", "Cacheable chunk reads that went to disk",
       MetricType::kCounter, [store] { return static_cast<double>(store->Stats().cache_misses); }},
      {"qcloud_object_chunk_cache_bytes", "Chunk bytes held by the small-chunk cache", MetricType::kGauge,
       [store] { return static_cast<double>(store->Stats().cache_bytes); }},
  };
  for (const Row& row : rows) {
    QCLOUD_RETURN_IF_ERROR(registry.AddCallback(row.name, row.help, row.type, row.read));
  }
  return Status::Ok();
}

S3ServerStats S3Server::Stats() const {
  const s3::Counters& c = impl_->counters;
  S3ServerStats s;
  s.requests = c.requests.load();
  s.errors = c.errors.load();
  s.bytes_in = c.bytes_in.load();
  s.bytes_out = c.bytes_out.load();
  s.instant_uploads = c.instant_uploads.load();
  s.connections = c.connections.load();
  return s;
}

}  // namespace qcloud::object
