#include "qcloud/core/compress.h"

#include <zstd.h>

#include <fmt/format.h>

namespace qcloud {
namespace {
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const noexcept { ZSTD_freeDCtx(c); }
};
}  // namespace

namespace {
// With `cctx` (may be null: a context for this call only).
Result<Buffer> Compress(ZSTD_CCtx* cctx, ByteView input, const ZstdOptions& options) {
  if (options.level < ZSTD_minCLevel() || options.level > ZSTD_maxCLevel()) {
    return InvalidArgument(fmt::format("zstd level {} out of range", options.level));
  }
  Buffer out;
  size_t bound = ZSTD_compressBound(input.size());
  auto dst = out.Prepare(bound);
  size_t n = cctx != nullptr ? ZSTD_compressCCtx(cctx, dst.data(), dst.size(), input.data(), input.size(), options.level)
                             : ZSTD_compress(dst.data(), dst.size(), input.data(), input.size(), options.level);
  if (ZSTD_isError(n)) {
    return Status(Errc::kResourceExhausted, fmt::format("zstd: {}", ZSTD_getErrorName(n)));
  }
  out.Commit(n);
  return out;
}
}  // namespace

Result<Buffer> ZstdCompress(ByteView input, const ZstdOptions& options) { return Compress(nullptr, input, options); }

struct ZstdCompressor::Context {
  ZSTD_CCtx* cctx = nullptr;
};

ZstdCompressor::ZstdCompressor() : ctx_(new Context{}) {}  // the zstd context at the first Compress()

ZstdCompressor::~ZstdCompressor() {
  ZSTD_freeCCtx(ctx_->cctx);
  delete ctx_;
}

Result<Buffer> ZstdCompressor::Compress(ByteView input, const ZstdOptions& options) {
  if (ctx_->cctx == nullptr) ctx_->cctx = ZSTD_createCCtx();
  // Without a context (creation failed): one per call, as ZstdCompress.
  return qcloud::Compress(ctx_->cctx, input, options);
}

Result<Buffer> ZstdDecompress(ByteView input, size_t max_output) {
  // Streaming decompression with an output cap: the frame header's content
  // size is only a claim, so never allocate from it beyond max_output, and
  // stop as soon as the real output passes the cap (zip bombs).
  // One context per thread, reset per call: creating one costs more than
  // decompressing a small frame (the monitor reads many).
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> dctx;
  if (!dctx) dctx.reset(ZSTD_createDCtx());
  if (!dctx) return Status(Errc::kResourceExhausted, "zstd: cannot create context");
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  // Bound the window a frame may ask for (memory per decompression).
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);

  Buffer out;
  unsigned long long claimed = ZSTD_getFrameContentSize(input.data(), input.size());
  if (claimed == ZSTD_CONTENTSIZE_ERROR) return Corruption("zstd: not a zstd frame");
  if (claimed != ZSTD_CONTENTSIZE_UNKNOWN && claimed > max_output) {
    return Status(Errc::kTooLarge,
                  fmt::format("zstd: frame holds {} bytes, limit {}", claimed, max_output));
  }
  size_t initial = claimed != ZSTD_CONTENTSIZE_UNKNOWN ? static_cast<size_t>(claimed) : 0;
  initial = std::min(std::max<size_t>(initial, 256), std::max<size_t>(max_output, 1));

  ZSTD_inBuffer in{input.data(), input.size(), 0};
  size_t want = initial;
  size_t last_ret = 0;
  while (true) {
    size_t room_cap = max_output - out.size() + 1;  // +1 detects overflow
    auto dst = out.Prepare(std::min(want, room_cap));
    size_t avail = std::min(dst.size(), room_cap);
    ZSTD_outBuffer o{dst.data(), avail, 0};
    last_ret = ZSTD_decompressStream(dctx.get(), &o, &in);
    if (ZSTD_isError(last_ret)) {
      return Corruption(fmt::format("zstd: {}", ZSTD_getErrorName(last_ret)));
    }
    out.Commit(o.pos);
    if (out.size() > max_output) {
      return Status(Errc::kTooLarge, fmt::format("zstd: output exceeds limit {}", max_output));
    }
    // Done when a frame just ended with nothing left over. (Calling again
    // would start a new frame and report a header hint, not 0.)
    if (last_ret == 0 && in.pos == in.size) break;
    // Input exhausted inside a frame and the decoder has no output pending.
    if (in.pos == in.size && o.pos < o.size) break;
    want = std::max<size_t>(out.size(), 4096);
  }
  if (last_ret != 0) return Corruption("zstd: truncated frame");
  return out;
}

}  // namespace qcloud
