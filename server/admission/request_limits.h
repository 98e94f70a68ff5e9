// Bounds on what one request may ask of the server. Checked by
// request_validation.h before anything reaches the engine.
#pragma once

namespace quantmt::server {

struct RequestLimits {
  // Sentences in one Translate request (or one stream message).
  int max_sentences = 256;
  // Bytes of UTF-8 per sentence and in all sentences of a request. The
  // engine separately refuses a sentence over the model's source positions.
  int max_sentence_bytes = 4096;
  int max_request_bytes = 262144;
  // Source tokens per sentence, end-of-sentence included (0: the model's
  // max_source_positions, which also caps any value given here).
  int max_sentence_tokens = 0;
  // Beam search bounds: beam_size in 1..max_beam_size, num_hypotheses in
  // 1..beam_size, max_length in 1..max_length.
  int max_beam_size = 16;
  int max_length = 512;
  // Used when a request leaves them at 0.
  int default_beam_size = 4;
  int default_max_length = 256;
  // Lines one Evaluate request may translate in all its test sets.
  int max_evaluate_lines = 20000;
  // Timed requests one Benchmark may run per batch size.
  int max_benchmark_iterations = 100;
  // Bytes of one request message (each message of a stream). The services
  // refuse a larger one themselves, so that the refusal is counted in the
  // metrics; gRPC's transport drops messages over TransportReceiveLimit()
  // before any of our code runs.
  int max_receive_message_bytes = 4 << 20;
};

}  // namespace quantmt::server
