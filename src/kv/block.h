// KvBlock: the bookkeeping record of one physical KV block (block_size token slots in every
// layer's K and V cache). The data lives in the backend; this is only control-plane state, owned
// and mutated exclusively by BlockPool.
//
// States: in use (ref_count > 0, not in the free list); free and cached (ref_count == 0, in the
// free list, holds reusable prefix KV registered in the hash index); free and empty (ref_count ==
// 0, in the free list, not in the index). A cached block stays in the index until it is
// reallocated.
#pragma once

#include <cstdint>

#include "kv/block_hash.h"

namespace kiln {

struct KvBlock {
  int32_t block_id = -1;
  int32_t ref_count = 0;  // live sequences whose block table holds this block
  // Intrusive LRU links of the free list (valid while in_free_list): -1 = none.
  int32_t prev_free = -1;
  int32_t next_free = -1;
  bool in_free_list = false;
  bool is_cached = false;  // registered in the hash index under `hash`
  BlockHash hash;
  // The hash of the previous block of the prefix (the root hash for a first block) when cached:
  // verified on every hit, so a block is found only under its own chain.
  BlockHash parent_hash;
};

}  // namespace kiln
