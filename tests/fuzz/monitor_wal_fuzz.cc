// Fuzzes the TSDB's write-ahead log decoding, the input replay reads from
// disk at open. The first byte picks: the framed record reader over the
// bytes (what a damaged segment looks like), or the series, samples and
// chunks payload decoders behind a valid frame (what gets past a checksum),
// each chunk then read by the Gorilla iterator as replay reads it. Every
// decoder must stay in bounds and either decode or say why; what decodes
// must encode back to a record that decodes to the same.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "monitor/chunk.h"
#include "monitor/wal.h"

using namespace qcloud;
using namespace qcloud::monitor::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteView in(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      while (!in.empty()) {
        auto rec = DecodeRecord(in);
        if (!rec.ok()) break;
        if (rec->size == 0 || rec->size > in.size()) std::abort();
        in = in.subview(rec->size, in.size() - rec->size);
      }
      return 0;
    }
    case 1: {
      auto series = DecodeSeries(in);
      if (!series.ok()) return 0;
      Buffer out;
      EncodeSeriesRecord(*series, out);
      auto rec = DecodeRecord(out.readable());
      if (!rec.ok() || rec->type != kRecordSeries) std::abort();
      auto again = DecodeSeries(rec->payload);
      if (!again.ok() || again->size() != series->size()) std::abort();
      for (size_t i = 0; i < series->size(); ++i) {
        if ((*again)[i].ref != (*series)[i].ref || !((*again)[i].labels == (*series)[i].labels)) std::abort();
      }
      return 0;
    }
    case 2: {
      auto chunks = DecodeChunks(in);
      if (!chunks.ok()) return 0;
      for (const WalChunk& c : *chunks) {
        ChunkIterator it(ByteView(c.bytes.data(), c.bytes.size()));
        size_t n = 0;
        while (it.Next()) ++n;
        if (n > 65535) std::abort();
      }
      Buffer out;
      EncodeChunksRecord(*chunks, out);
      auto rec = DecodeRecord(out.readable());
      if (!rec.ok() || rec->type != kRecordChunks) std::abort();  // written as type 5
      auto again = DecodeChunks(rec->payload);
      if (!again.ok() || again->size() != chunks->size()) std::abort();
      for (size_t i = 0; i < chunks->size(); ++i) {
        if ((*again)[i].ref != (*chunks)[i].ref || (*again)[i].bytes != (*chunks)[i].bytes) std::abort();
      }
      return 0;
    }
    default: {
      auto samples = DecodeSamples(in);
      if (!samples.ok()) return 0;
      Buffer out;
      EncodeSamplesRecord(*samples, out);
      auto rec = DecodeRecord(out.readable());
      if (!rec.ok()) std::abort();
      auto again = DecodeSamples(rec->payload);
      if (!again.ok() || again->size() != samples->size()) std::abort();
      for (size_t i = 0; i < samples->size(); ++i) {
        const WalSample& a = (*samples)[i];
        const WalSample& b = (*again)[i];
        if (a.ref != b.ref || a.t != b.t || std::bit_cast<uint64_t>(a.v) != std::bit_cast<uint64_t>(b.v)) std::abort();
      }
      return 0;
    }
  }
}
