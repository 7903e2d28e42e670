// Speculative decoding rounds for a batch of sequences that share one forward per model step
// (continuous batching: sequences join between rounds and leave when they finish).
//
// One round, for every sequence at once:
//  1. the drafts (a Family of K >= 1, one batched pass per draft step) take what they have not
//     seen (1 or 2 tokens) and give the distribution at the next position; a bonus token from
//     the last round gets its record from here (its draft distribution is only known now, so
//     its emission waits one round);
//  2. each sequence proposes its own γ tokens from its proposer's warped distribution (the
//     mixture q_mix or one draft); a sequence with a smaller γ feeds padding in the later steps;
//  3. the target scores every proposal in one forward; verify_proposals() keeps each sequence's
//     longest accepted prefix and adds a resampled or bonus token;
//  4. rejected positions are masked in both caches (positions are counted over unmasked keys, so
//     a row's holes are invisible to it) and positions masked in every row are dropped.
// γ grows after a fully accepted round and shrinks after a rejection, per sequence. Each sequence
// has its own sampler, γ and options, so its tokens depend on its prompt and seed, not on which
// other sequences share the batch (up to floating-point differences of batched arithmetic).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "serve/speculative.h"

namespace drafteu::serve {

class SpeculativeBatch {
 public:
  explicit SpeculativeBatch(SpeculativeDecoder& decoder);
  ~SpeculativeBatch();
  SpeculativeBatch(const SpeculativeBatch&) = delete;
  SpeculativeBatch& operator=(const SpeculativeBatch&) = delete;

  // Validates and queues a sequence (throws drafteu::Error on a bad prompt or options); it joins
  // the batch at the next step(). Returns its id.
  uint64_t add(const std::vector<int64_t>& prompt, SpeculativeOptions options,
               TokenCallback on_token = {});

  struct Finished {
    uint64_t id = 0;
    std::vector<SpecToken> tokens;
    FinishReason finish = FinishReason::Length;
    SpecStats stats;
  };
  // One round for every sequence; returns those that finished in it (they leave the batch).
  std::vector<Finished> step();

  size_t size() const;  // sequences decoding and waiting to join
  bool empty() const { return size() == 0; }

  // Inspection (tests). A decoding sequence's prompt and decided tokens (a bonus token awaiting
  // its record included), its batch row, and the caches (the target's: member 0 with an adapter).
  const std::vector<int64_t>& sequence(uint64_t id) const;
  int64_t row_of(uint64_t id) const;
  const KVCache& target_cache() const { return target_cache_.at(0); }
  const FamilyCache& draft_cache() const { return draft_cache_; }

 private:
  struct Position {                   // what a token's record needs: raw log-probs at its position
    torch::Tensor target, reference;  // [V]; reference undefined = the target
  };
  struct Row;
  struct Emission;  // tokens of one row waiting for their records
  void admit();
  void prefill(Row& row, FamilyCache& target_cache, FamilyCache& draft_cache);
  torch::Tensor draft_step(const std::vector<std::vector<int64_t>>& feeds, bool last_only);
  std::pair<torch::Tensor, torch::Tensor> verify_step(
      const std::vector<std::vector<int64_t>>& feeds);
  torch::Tensor proposal_logp(const Row& row, const torch::Tensor& draft_logp) const;
  void emit(std::vector<Emission>& emissions);
  void emit_one(Row& row, SpecToken tok);
  void drop_finished(std::vector<Finished>& done, torch::Tensor* kept);
  // One round of step(), in its three phases (a RoundClock charges each row's time split).
  struct RoundClock;
  torch::Tensor feed_drafts(std::vector<Finished>& done, RoundClock& clock);
  int64_t propose(torch::Tensor next);
  std::vector<Emission> verify(int64_t big_g);
  void roll_back(int64_t row, int64_t accepted, int64_t big_g, int64_t target_end,
                 int64_t draft_end);

  SpeculativeDecoder& dec_;
  std::vector<Row> rows_, joining_;
  FamilyCache target_cache_, draft_cache_;  // target_cache_: one KVCache, or the 2-member family's
  uint64_t next_id_ = 0;
};

}  // namespace drafteu::serve
