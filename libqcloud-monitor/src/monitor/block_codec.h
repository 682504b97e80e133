#pragma once

// How a block stores one series' samples (block format version 2,
// docs/notes/monitor-format.md): smaller than the head's Gorilla chunks for
// the values monitoring data is made of — integers and decimal fractions
// (12.47, 0.93) — the way VictoriaMetrics stores them.
//
//   u8 kind, then:
//     1  Gorilla: a chunk as monitor/chunk.h writes it (any values; the
//        fallback when one value is not a short decimal, NaN included)
//     2  packed: the bytes below
//     3  packed, then compressed as one zstd frame
//   packed:
//     varint n (1 .. kMaxBlockChunkSamples)
//     timestamps: zigzag varint t0, zigzag varint (t1 - t0), then zigzag
//       varints of the deltas of deltas
//     i8 E: every value is m / 10^E exactly (E >= 0) or m * 10^-E (E < 0)
//     u8 m_mode: 0 = zigzag varint m0 then deltas, 1 = m0, d1, then deltas
//       of deltas (the smaller is written; arithmetic wraps at 64 bits)
//
// Decoding is bounded and checked (disk input): counts, varints, the zstd
// frame's size, and trailing bytes.

#include <cstdint>
#include <span>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor::detail {

inline constexpr size_t kMaxBlockChunkSamples = 16384;
inline constexpr uint8_t kBlockChunkGorilla = 1;
inline constexpr uint8_t kBlockChunkPacked = 2;
inline constexpr uint8_t kBlockChunkPackedZstd = 3;

// Samples in time order, 1 .. kMaxBlockChunkSamples of them.
std::vector<uint8_t> EncodeBlockChunk(std::span<const Sample> samples);
// Appends the samples in [mint, maxt]. kCorruption when malformed.
Status DecodeBlockChunk(ByteView bytes, int64_t mint, int64_t maxt, std::vector<Sample>& out);

}  // namespace qcloud::monitor::detail
