// S3Server: HTTP/1.1 framing over the runtime's Asio contexts. The only
// Beast translation unit of the S3 front end (Beast costs ~15 s of compile
// time per file): Beast parses requests (head, Content-Length and chunked
// bodies, limits); responses are written by hand, a head and then the
// object piece by piece, one chunk of the store at a time.
#include "qcloud/object/s3_server.h"

#include <chrono>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "s3/service.h"
#include "s3/xml.h"

namespace qcloud::object {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

constexpr size_t kHeaderLimit = 16 * 1024;
constexpr size_t kBodyBuffer = 256 * 1024;

class Session;

struct SessionSet {
  std::mutex mu;
  std::vector<std::weak_ptr<Session>> live;
};

std::string Reason(int status) {
  const auto r = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return std::string(r.data(), r.size());
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, s3::Service& service, const S3ServerOptions& options)
      : stream_(std::move(socket)), service_(service), options_(options), body_(kBodyBuffer) {
    service_.counters().connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() { service_.counters().connections.fetch_sub(1, std::memory_order_relaxed); }

  void Start() { ReadHeader(); }

  void CloseAsync() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      if (!self->busy_) self->Close();
    });
  }

 private:
  void ReadHeader() {
    busy_ = false;
    if (stopping_) return Close();
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(std::numeric_limits<uint64_t>::max());
    stream_.expires_after(options_.idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return Close();
    }
    busy_ = true;
    started_ = std::chrono::steady_clock::now();
    if (ec) {
      const std::string id = service_.NextRequestId();
      s3::HttpResponse r = ec == http::error::header_limit
                               ? service_.Error("RequestHeaderSectionTooLarge", "", "", id, false)
                               : service_.Error("InvalidRequest", "malformed HTTP request: " + ec.message(), "", id, false);
      r.close = true;
      op_ = "BadRequest";
      return Respond(std::move(r));
    }
    const auto& req = parser_->get();
    s3::HttpRequest h;
    h.method = std::string(req.method_string());
    h.target = std::string(req.target());
    h.headers.reserve(16);
    for (const auto& field : req) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      h.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    keep_alive_ = req.keep_alive();
    const bool expect_continue = [&] {
      auto it = req.find(http::field::expect);
      return it != req.end() && beast::iequals(it->value(), "100-continue");
    }();
    call_ = service_.Begin(std::move(h));
    op_ = call_->operation();
    if (!call_->wants_body()) {
      s3::HttpResponse r = call_->Finish();
      // A body we will not read cannot be skipped safely: close after.
      if (!parser_->is_done()) r.close = true;
      call_.reset();
      return Respond(std::move(r));
    }
    if (parser_->is_done()) return FinishBody();
    if (expect_continue) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue),
                        [self = shared_from_this()](beast::error_code wec, size_t) {
                          if (wec) return self->Abandon();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    auto& body = parser_->get().body();
    body.data = body_.data();
    body.size = body_.size();
    stream_.expires_after(options_.idle_timeout);
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    const size_t got = body_.size() - parser_->get().body().size;
    if (got > 0 && call_) {
      if (Status s = call_->Feed(ByteView(body_.data(), got)); !s.ok()) {
        s3::HttpResponse r = call_->Finish();
        r.close = true;
        call_.reset();
        return Respond(std::move(r));
      }
    }
    if (ec) {
      // The client went away or broke the framing mid-body: the call is
      // dropped unfinished, so nothing it began becomes visible.
      if (ec == http::error::partial_message || ec == http::error::end_of_stream ||
          ec == asio::error::eof || ec == beast::error::timeout || ec == asio::error::connection_reset) {
        return Abandon();
      }
      call_.reset();
      s3::HttpResponse r =
          service_.Error("InvalidRequest", "malformed HTTP body: " + ec.message(), "", service_.NextRequestId(), false);
      r.close = true;
      return Respond(std::move(r));
    }
    if (parser_->is_done()) return FinishBody();
    ReadBody();
  }

  void FinishBody() {
    s3::HttpResponse r = call_->Finish();
    call_.reset();
    Respond(std::move(r));
  }

  // Drops the request without an answer and closes.
  void Abandon() {
    call_.reset();
    Close();
  }

  void Respond(s3::HttpResponse r) {
    response_ = std::move(r);
    auto& c = service_.counters();
    if (response_.status >= 400) c.errors.fetch_add(1, std::memory_order_relaxed);
    if (!keep_alive_ || stopping_) response_.close = true;
    if (response_.object && !response_.head && response_.length > 0) {
      next_ = response_.offset;
      end_ = response_.offset + response_.length;
      // The first piece goes out with the head, so a small object is one write.
      auto piece = ReadPiece();
      if (!piece.ok()) {
        const Status s = piece.status();
        response_ = service_.Error(s == qcloud::Errc::kNotFound ? "NoSuchKey" : "InternalError", s.message(), "",
                                   service_.NextRequestId(), false);
        c.errors.fetch_add(1, std::memory_order_relaxed);
        return WriteHead();
      }
      piece_ = std::move(*piece);
      head_ = Head();
      std::array<asio::const_buffer, 2> bufs{asio::buffer(head_),
                                             asio::buffer(piece_.readable().data(), piece_.size())};
      asio::async_write(stream_, bufs, [self = shared_from_this()](beast::error_code ec, size_t) {
        self->OnPiece(ec);
      });
      return;
    }
    WriteHead();
  }

  void WriteHead() {
    head_ = Head();
    if (!response_.object && !response_.head) head_ += response_.body;
    stream_.expires_after(options_.idle_timeout);
    asio::async_write(stream_, asio::buffer(head_), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->Done(ec);
    });
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

  void OnPiece(beast::error_code ec) {
    if (ec || next_ >= end_) return Done(ec);
    auto piece = ReadPiece();
    if (!piece.ok() || piece->size() == 0) {
      // The head is out: all we can do is cut the connection short.
      return Abandon();
    }
    piece_ = std::move(*piece);
    stream_.expires_after(options_.idle_timeout);
    asio::async_write(stream_, asio::buffer(piece_.readable().data(), piece_.size()),
                      [self = shared_from_this()](beast::error_code wec, size_t) { self->OnPiece(wec); });
  }

  void Done(beast::error_code ec) {
    Observe();
    piece_ = Buffer();
    if (ec || response_.close) return Close();
    ReadHeader();
  }

  void Observe() {
    auto& c = service_.counters();
    if (c.by_op != nullptr) c.by_op->WithLabels({op_, std::to_string(response_.status)}).Increment();
    if (c.latency != nullptr) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      c.latency->WithLabels({op_}).Observe(secs);
    }
  }

  std::string Head() const {
    const s3::HttpResponse& r = response_;
    std::string h = fmt::format("HTTP/1.1 {} {}\r\n", r.status, Reason(r.status));
    h += "Server: qcloud-cosd\r\n";
    h += "Date: ";
    h += s3::HttpTime(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count());
    h += "\r\n";
    for (const auto& [name, value] : r.headers) {
      h += name;
      h += ": ";
      h += value;
      h += "\r\n";
    }
    if (r.status != 204 && r.status != 304) h += fmt::format("Content-Length: {}\r\n", r.content_length());
    if (r.close) h += "Connection: close\r\n";
    h += "\r\n";
    return h;
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  s3::Service& service_;
  const S3ServerOptions& options_;
  beast::flat_buffer buffer_{kHeaderLimit};
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::vector<std::byte> body_;
  std::unique_ptr<s3::Call> call_;
  s3::HttpResponse response_;
  std::string head_;
  Buffer piece_;
  uint64_t next_ = 0, end_ = 0;
  bool keep_alive_ = true;
  bool busy_ = false;
  bool stopping_ = false;
  std::string op_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

struct S3Server::Impl {
  ObjectStore* store = nullptr;
  S3ServerOptions options;
  s3::Counters counters;
  std::unique_ptr<s3::Service> service;
  std::shared_ptr<SessionSet> sessions = std::make_shared<SessionSet>();
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
  impl->service = std::make_unique<s3::Service>(store, impl->options, impl->counters);
  return std::unique_ptr<S3Server>(new S3Server(std::move(impl)));
}

Result<Endpoint> S3Server::Listen(Runtime& runtime, const Endpoint& endpoint) {
  auto sessions = impl_->sessions;
  runtime.OnStop([sessions] {
    std::lock_guard lock(sessions->mu);
    for (auto& w : sessions->live) {
      if (auto s = w.lock()) s->CloseAsync();
    }
    sessions->live.clear();
  });
  Impl* impl = impl_.get();
  return runtime.Listen(endpoint, [impl, sessions](tcp::socket socket, size_t) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto s = std::make_shared<Session>(std::move(socket), *impl->service, impl->options);
    {
      std::lock_guard lock(sessions->mu);
      if (sessions->live.size() >= 64) {
        std::erase_if(sessions->live, [](const auto& w) { return w.expired(); });
      }
      sessions->live.push_back(s);
    }
    s->Start();
  });
}

Status S3Server::ExportMetrics(MetricsRegistry& registry) {
  s3::Counters& c = impl_->counters;
  QCLOUD_ASSIGN_OR_RETURN(c.by_op, registry.AddCounter("qcloud_object_requests_total",
                                                       "S3 requests answered, by operation and HTTP status",
                                                       {"op", "code"}));
  QCLOUD_ASSIGN_OR_RETURN(c.latency, registry.AddHistogram("qcloud_object_request_seconds",
                                                           "Time from a request's head to its last byte sent",
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
