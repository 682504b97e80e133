#pragma once

// How a block stores one series' samples (block format versions 2 to 6,
// docs/notes/monitor-format.md, which specifies every kind bit for bit):
// smaller than the head's chunks for the values monitoring data is made of
// — integers and decimal fractions (12.47, 0.93) kept as integers, the way
// VictoriaMetrics stores them — and for floats.
//
//   u8 kind, then:
//     1  a chunk as monitor/chunk.h writes it (Gorilla for any values;
//        other kinds read too)
//     2  packed: varint timestamps and mantissas (read only)
//     3  packed, then compressed as one zstd frame (read only)
//     4  split: timestamps as runs of deltas of deltas, values as an
//        adaptive chunk's Rice-coded residuals (version 5)
//     5  split, then compressed as one zstd frame (version 5; the synthetic
//        random walks of bench/monitor repeat their steps, and zstd finds it)
//     6  coded (version 6): timestamps and values each as x0 + g * y_i (g
//        their common divisor), the y_i's residuals against a prediction
//        chosen per chunk (delta, delta of delta, a moving mean; or none
//        when the y_i are 0, 1, 2, ... or all 0), range-coded
//        (monitor/range_coder.h): bit width by an adaptive tree, sign and
//        the two bits below the top adaptive, the rest direct.
//
// Written: decimals as kind 6; floats as the smallest of kinds 1, 4/5 and
// 6. Decoding is bounded and checked (disk input): counts, varints, the
// zstd frame's size, the range coder's end, and trailing bytes.

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
inline constexpr uint8_t kBlockChunkCoded = 6;

// Samples in time order, 1 .. kMaxBlockChunkSamples of them. `zstd`: a
// compressor to reuse across the chunks of a block (else one per call).
std::vector<uint8_t> EncodeBlockChunk(std::span<const Sample> samples, ZstdCompressor* zstd = nullptr);
// Appends the samples in [mint, maxt]. kCorruption when malformed.
Status DecodeBlockChunk(ByteView bytes, int64_t mint, int64_t maxt, std::vector<Sample>& out);

}  // namespace qcloud::monitor::detail
