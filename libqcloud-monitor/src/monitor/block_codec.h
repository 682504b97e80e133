#pragma once

// How a block stores one series' samples (block format versions 2 to 5,
// docs/notes/monitor-format.md): smaller than the head's chunks for the
// values monitoring data is made of — integers and decimal fractions
// (12.47, 0.93) kept as integers, the way VictoriaMetrics stores them — and
// for floats. The encoder writes the smallest form that holds the values.
//
//   u8 kind, then:
//     1  a chunk as monitor/chunk.h writes it (Gorilla for any values;
//        other kinds read too)
//     2  packed: the bytes below
//     3  packed, then compressed as one zstd frame
//     4  split: the bytes below (version 5)
//     5  split, then compressed as one zstd frame (version 5; the synthetic
//        random walks of bench/monitor repeat their steps, and zstd finds it)
//   packed:
//     varint n (1 .. kMaxBlockChunkSamples)
//     timestamps: zigzag varint t0, zigzag varint (t1 - t0), then zigzag
//       varints of the deltas of deltas
//     i8 E: every value is m / 10^E exactly (E >= 0) or m * 10^-E (E < 0)
//     u8 m_mode: 0 = zigzag varint m0 then deltas, 1 = m0, d1, then deltas
//       of deltas (the smaller is written; arithmetic wraps at 64 bits)
//   split:
//     varint n (1 .. kMaxBlockChunkSamples)
//     timestamps: zigzag varint t0, zigzag varint (t1 - t0), then for the
//       other n - 2 pairs of varint run (>= 1) and zigzag varint delta of
//       delta, which repeats `run` times (a regular scrape: one pair)
//     u8 0 = decimal (x = m as above), 1 = float (x = the value's bits)
//     i8 E (0 for float)
//     a bit stream, most significant bit first, to the end (the last
//       byte's unused bits 0): x0 as a zigzag varint (decimal) or 64 bits,
//       then each later x as an adaptive chunk's residual (monitor/chunk.h)
//
// Decoding is bounded and checked (disk input): counts, varints, the zstd
// frame's size, and trailing bytes.

#include <cstdint>
#include <span>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/compress.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor::detail {

inline constexpr size_t kMaxBlockChunkSamples = 16384;
inline constexpr uint8_t kBlockChunkGorilla = 1;
inline constexpr uint8_t kBlockChunkPacked = 2;
inline constexpr uint8_t kBlockChunkPackedZstd = 3;
inline constexpr uint8_t kBlockChunkSplit = 4;
inline constexpr uint8_t kBlockChunkSplitZstd = 5;

// Samples in time order, 1 .. kMaxBlockChunkSamples of them. `zstd`: a
// compressor to reuse across the chunks of a block (else one per call).
std::vector<uint8_t> EncodeBlockChunk(std::span<const Sample> samples, ZstdCompressor* zstd = nullptr);
// Appends the samples in [mint, maxt]. kCorruption when malformed.
Status DecodeBlockChunk(ByteView bytes, int64_t mint, int64_t maxt, std::vector<Sample>& out);

}  // namespace qcloud::monitor::detail
