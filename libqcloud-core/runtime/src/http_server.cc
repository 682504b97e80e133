// HttpServer: a StreamSession per connection that frames HTTP/1.1 with
// Beast's request parser and answers through the handler. One of the two
// Beast translation units of the runtime (with metrics_http.cc).
#include "qcloud/runtime/http_server.h"

#include "runtime/http_session.h"

#include <optional>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <fmt/format.h>

namespace qcloud {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr size_t kOutputHighWater = 4 << 20;  // stop reading while this much is unsent

class HttpSession final : public StreamSession {
 public:
  HttpSession(const HttpHandler& handler, const HttpServerOptions& o) : handler_(handler), o_(o) {}

  size_t Process(ByteView in, Buffer& out) override {
    size_t used = 0;
    while (!closing_ && out.size() < kOutputHighWater) {
      if (!parser_) {
        parser_.emplace();
        parser_->header_limit(static_cast<uint32_t>(o_.max_header_bytes));
        parser_->body_limit(o_.max_body_bytes);
        parser_->eager(false);  // stop after the head: see below
        continued_ = false;
      }
      const ByteView rest = in.subview(used, in.size() - used);
      if (rest.empty()) return used;
      beast::error_code ec;
      const size_t n = parser_->put(boost::asio::buffer(rest.data(), rest.size()), ec);
      used += n;
      if (ec == http::error::need_more) {
        ContinueIfAsked(out);
        if (n == 0) return used;
        continue;
      }
      if (ec) {
        const int status = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
        HttpResponse r{.status = status, .body = fmt::format("{} {}: {}\n", status, HttpReason(status), ec.message())};
        r.close = true;
        Write(r, false, out);
        return used;
      }
      if (parser_->is_header_done() && !parser_->eager() && !parser_->is_done()) {
        // The head is in. Chunked request bodies are refused: Beast 1.81's
        // chunk parser asserts on some splits of its input (found by
        // core_http_fuzz), and every client of these APIs sends a length.
        if (parser_->chunked()) {
          HttpResponse r{.status = 411, .body = "411 Length Required: send the body with a Content-Length\n"};
          r.close = true;
          Write(r, false, out);
          return used;
        }
        parser_->eager(true);
      }
      if (!parser_->is_done()) {
        ContinueIfAsked(out);
        continue;
      }
      auto& msg = parser_->get();
      HttpRequest req;
      req.method = std::string(msg.method_string());
      req.target = std::string(msg.target());
      const size_t q = req.target.find('?');
      bool ok = UrlDecode(std::string_view(req.target).substr(0, q), req.path, false);
      if (q != std::string::npos) req.query = req.target.substr(q + 1);
      for (const auto& f : msg) {
        req.headers.emplace_back(AsciiLower(std::string_view(f.name_string().data(), f.name_string().size())),
                                 std::string(f.value()));
      }
      req.body = std::move(msg.body());
      const bool keep = msg.keep_alive();
      const bool head = req.method == "HEAD";
      parser_.reset();
      HttpResponse r = ok ? handler_(req) : HttpResponse{.status = 400, .body = "bad percent-encoding in the path\n"};
      if (!keep) r.close = true;
      Write(r, head, out);
    }
    return used;
  }

  bool closing() const noexcept override { return closing_; }
  bool blocked(const Buffer& out) const noexcept override { return out.size() >= kOutputHighWater; }

 private:
  void ContinueIfAsked(Buffer& out) {
    if (continued_ || !parser_->is_header_done()) return;
    continued_ = true;
    if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
      out.Append(ByteView(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")));
    }
  }

  void Write(const HttpResponse& r, bool head, Buffer& out) {
    std::string_view reason = HttpReason(r.status);
    std::string h = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", r.status,
                                reason.empty() ? "Unknown" : reason, r.content_type, r.body.size());
    for (const auto& [n, v] : r.headers) h += fmt::format("{}: {}\r\n", n, v);
    if (r.close) h += "Connection: close\r\n";
    h += "\r\n";
    out.Append(ByteView(h));
    if (!head) out.Append(ByteView(r.body));
    if (r.close) closing_ = true;
  }

  const HttpHandler& handler_;
  const HttpServerOptions& o_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool continued_ = false;
  bool closing_ = false;
};

struct Factory final : SessionFactory {
  Factory(HttpHandler h, HttpServerOptions o) : handler(std::move(h)), options(std::move(o)) {}
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return runtime_internal::NewHttpSession(handler, options);
  }
  HttpHandler handler;
  HttpServerOptions options;
};

}  // namespace

std::unique_ptr<StreamSession> runtime_internal::NewHttpSession(const HttpHandler& handler,
                                                                const HttpServerOptions& options) {
  return std::make_unique<HttpSession>(handler, options);
}

struct HttpServer::Impl {
  std::unique_ptr<Factory> factory;
  std::unique_ptr<TcpServer> tcp;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpServer::~HttpServer() = default;

Result<std::unique_ptr<HttpServer>> HttpServer::Open(HttpHandler handler, const HttpServerOptions& options) {
  if (!handler) return InvalidArgument("http server: a handler is required");
  auto impl = std::make_unique<Impl>();
  impl->factory = std::make_unique<Factory>(std::move(handler), options);
  TcpServerOptions t;
  t.listen = options.listen;
  t.threads = options.threads;
  t.max_connections = options.max_connections;
  t.max_input = options.max_header_bytes + options.max_body_bytes + 64 * 1024;
  t.read_buffer = 64 * 1024;
  t.idle_timeout = options.idle_timeout;
  t.backend = options.backend;
  t.clock = options.clock;
  t.logger = options.logger;
  QCLOUD_ASSIGN_OR_RETURN(impl->tcp, TcpServer::Open(*impl->factory, t));
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

const Endpoint& HttpServer::address() const noexcept { return impl_->tcp->address(); }
unsigned HttpServer::threads() const noexcept { return impl_->tcp->threads(); }
Status HttpServer::Serve(unsigned index) { return impl_->tcp->Serve(index); }
void HttpServer::Stop() { impl_->tcp->Stop(); }
TcpServerStats HttpServer::stats() const noexcept { return impl_->tcp->stats(); }

}  // namespace qcloud
