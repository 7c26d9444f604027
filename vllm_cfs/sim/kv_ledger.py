"""The simulated GPU's record of whose KV cache lives in which GPU or CPU block.

The ledger tracks block *contents*, not owners: a block's tag is a chained hash of the tokens
whose KV it holds (the tokens before it, and its own). A sequence may attend only to blocks
whose tags match its own tokens, so shared prefixes and copy-on-write copies check out, while
a block that was swapped out, never swapped back in, or overwritten by another sequence does
not. Any mismatch raises KVCacheViolation naming the request, the sequence and the block: the
simulator doubles as a checker of the scheduler.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

# A block's tag: (hash of tokens up to the end of the block, number of tokens that hash covers).
Tag = tuple[int, int]


class KVCacheViolation(RuntimeError):
    """The scheduler asked for something that would corrupt or read missing KV cache."""


@dataclasses.dataclass(frozen=True)
class SeqWork:
    """One sequence in one step: it reads KV of tokens[:computed] and writes tokens[computed:computed+new]."""

    request_id: str
    seq_id: int
    tokens: Sequence[int]
    computed: int
    new: int
    block_table: Sequence[int]


class KVLedger:
    def __init__(self, num_gpu_blocks: int, num_cpu_blocks: int, block_size: int):
        self.block_size = block_size
        self.gpu: list[Tag | None] = [None] * num_gpu_blocks
        self.cpu: list[Tag | None] = [None] * num_cpu_blocks
        self._chains: dict[int, list[int]] = {}  # seq_id -> chained hashes of its full blocks

    # --- block movements, in the order vLLM 0.9's worker applies them ---

    def swap_in(self, mapping: Iterable[tuple[int, int]], batch: Sequence[SeqWork]) -> None:
        readers = self._gpu_blocks_read_by(batch)
        for cpu_block, gpu_block in mapping:
            self._check_index(self.cpu, cpu_block, "CPU", "swap in from")
            self._check_index(self.gpu, gpu_block, "GPU", "swap in to")
            incoming = self.cpu[cpu_block]
            if incoming is None:
                raise KVCacheViolation(f"swap-in from CPU block {cpu_block}, which holds no KV cache")
            if gpu_block in readers:
                seq, index = readers[gpu_block]
                held = self.gpu[gpu_block]
                if held != incoming and self._holds(seq, index, held):
                    raise KVCacheViolation(
                        f"swap-in from CPU block {cpu_block} into GPU block {gpu_block}, which still holds the live KV "
                        f"of request {seq.request_id} seq {seq.seq_id} (its block {index}, scheduled in this same step)"
                    )
            self.gpu[gpu_block] = incoming
            self.cpu[cpu_block] = None

    def swap_out(self, mapping: Iterable[tuple[int, int]]) -> None:
        for gpu_block, cpu_block in mapping:
            self._check_index(self.gpu, gpu_block, "GPU", "swap out from")
            self._check_index(self.cpu, cpu_block, "CPU", "swap out to")
            self.cpu[cpu_block] = self.gpu[gpu_block]
            # The block manager hands the GPU block to someone else now: reading it is a bug.
            self.gpu[gpu_block] = None

    def copy(self, mapping: Iterable[tuple[int, int]]) -> None:
        for src, dst in mapping:
            self._check_index(self.gpu, src, "GPU", "copy from")
            self._check_index(self.gpu, dst, "GPU", "copy to")
            self.gpu[dst] = self.gpu[src]

    # --- the forward pass ---

    def run(self, batch: Sequence[SeqWork]) -> None:
        """Check every sequence can read its KV, then record the KV this step writes."""
        for seq in batch:
            self._check_reads(seq)
        for seq in batch:
            self._write(seq)

    def forget(self, seq_ids: Iterable[int]) -> None:
        """Drop cached hashes of finished sequences (their blocks are simply reused later)."""
        for seq_id in seq_ids:
            self._chains.pop(seq_id, None)

    # --- internals ---

    def _tag(self, seq: SeqWork, block_index: int, end: int) -> Tag:
        """Tag of the block holding tokens [block_index * bs, end) of seq (end <= len(seq.tokens))."""
        bs = self.block_size
        full = end == (block_index + 1) * bs
        chain = self._chains.setdefault(seq.seq_id, [])
        while len(chain) < block_index + full:
            j = len(chain)
            chain.append(hash((chain[j - 1] if j else 0, tuple(seq.tokens[j * bs : (j + 1) * bs]))))
        if full:
            return chain[block_index], end
        prev = chain[block_index - 1] if block_index else 0
        return hash((prev, tuple(seq.tokens[block_index * bs : end]))), end

    def _check_reads(self, seq: SeqWork) -> None:
        bs = self.block_size
        needed_blocks = -(-seq.computed // bs)
        if needed_blocks > len(seq.block_table):
            raise KVCacheViolation(
                f"request {seq.request_id} seq {seq.seq_id} has {seq.computed} computed tokens but only "
                f"{len(seq.block_table)} blocks in its block table"
            )
        for i in range(needed_blocks):
            block = seq.block_table[i]
            self._check_index(self.gpu, block, "GPU", f"request {seq.request_id} seq {seq.seq_id} reads")
            held = self.gpu[block]
            if not self._holds(seq, i, held):
                what = "no KV cache" if held is None else "different KV (another sequence's, or stale)"
                raise KVCacheViolation(
                    f"request {seq.request_id} seq {seq.seq_id} reads GPU block {block} (its block {i}, tokens "
                    f"{i * bs}..{min((i + 1) * bs, seq.computed) - 1}) but that block holds {what}: its KV is not on the GPU"
                )

    def _write(self, seq: SeqWork) -> None:
        bs = self.block_size
        start, stop = seq.computed, seq.computed + seq.new
        if stop == start:
            return
        last_block = (stop - 1) // bs
        if last_block >= len(seq.block_table):
            raise KVCacheViolation(
                f"request {seq.request_id} seq {seq.seq_id} writes KV of token {stop - 1} but its block table "
                f"has only {len(seq.block_table)} blocks"
            )
        for i in range(start // bs, last_block + 1):
            block = seq.block_table[i]
            self._check_index(self.gpu, block, "GPU", f"request {seq.request_id} seq {seq.seq_id} writes")
            self.gpu[block] = self._tag(seq, i, min((i + 1) * bs, stop))

    def _holds(self, seq: SeqWork, index: int, held: Tag | None) -> bool:
        """Whether a block tagged `held` has seq's KV for its block `index`, as far as seq has computed.

        A block shared through the prefix cache may hold more of the same tokens than seq computed.
        """
        end = min((index + 1) * self.block_size, seq.computed)
        return held is not None and end <= held[1] <= len(seq.tokens) and held == self._tag(seq, index, held[1])

    def _gpu_blocks_read_by(self, batch: Sequence[SeqWork]) -> dict[int, tuple[SeqWork, int]]:
        readers: dict[int, tuple[SeqWork, int]] = {}
        for seq in batch:
            for index, block in enumerate(seq.block_table[: -(-seq.computed // self.block_size)]):
                readers[block] = (seq, index)
        return readers

    @staticmethod
    def _check_index(blocks: list, index: int, device: str, action: str) -> None:
        if not 0 <= index < len(blocks):
            raise KVCacheViolation(f"{action} {device} block {index}, but the {device} cache has blocks 0..{len(blocks) - 1}")
