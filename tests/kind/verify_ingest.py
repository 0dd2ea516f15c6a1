#!/usr/bin/env python3
"""Compares what the ingest Job was told with what the cluster committed.

    verify_ingest.py INGEST_LOG READ_BACK_LOG BLOCK

INGEST_LOG: the Job's lines `ACK <first key> <rows> <checksum> <ms>` (one insert
request of BLOCK keys, acknowledged) and `NACK <first key> <ms> <error>` (failed:
it may or may not have landed). READ_BACK_LOG: `milvus-like read-back
--key-blocks BLOCK` after a flush: the total, `duplicated keys N`, and
`block <first key> rows <n> checksum <x>` per block of keys.

Passes when no key is there twice, every acknowledged block is there exactly,
with the checksum insert reported for it, no block is there that was never sent,
an unacknowledged block is absent or there whole, and the total checksum is the
sum of the blocks'. Prints one line of figures; exits 1 with the differences.
"""

import re
import sys

MASK = (1 << 64) - 1


def main() -> int:
    ingest, read_back, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
    errors = []
    acks, nacks = {}, []
    for line in open(ingest, encoding="utf-8"):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "ACK":
            if len(parts) != 5:
                errors.append(f"an acknowledged request without its count and checksum: {line.strip()}")
                continue
            acks[int(parts[1])] = (int(parts[2]), parts[3])
        elif parts[0] == "NACK":
            nacks.append(int(parts[1]))
    blocks, duplicates, total = {}, None, None
    for line in open(read_back, encoding="utf-8"):
        if m := re.match(r"block (-?\d+) rows (\d+) checksum ([0-9a-f]{16})$", line.strip()):
            blocks[int(m[1])] = (int(m[2]), m[3])
        elif m := re.match(r"duplicated keys (\d+)$", line.strip()):
            duplicates = int(m[1])
        elif m := re.search(r": (\d+) rows, (\d+) deleted, checksum ([0-9a-f]{16})", line):
            total = (int(m[1]), int(m[3], 16))
    if total is None or duplicates is None:
        errors.append("read-back printed no total or no duplicate count")
        total = (0, 0)
    if duplicates:
        errors.append(f"{duplicates} keys are there more than once")
    if not acks:
        errors.append("no request was acknowledged")
    for key, want in sorted(acks.items()):
        got = blocks.get(key)
        if got != want:
            errors.append(f"block {key}: acknowledged {want}, committed {got}")
    landed = absent = 0
    expected_checksum = sum(int(c, 16) for _, c in acks.values())
    for key in nacks:
        got = blocks.get(key)
        if got is None:
            absent += 1
        elif got[0] == block:
            landed += 1
            expected_checksum += int(got[1], 16)
        else:
            errors.append(f"block {key}: its request failed and {got[0]} of its {block} rows landed")
    strays = sorted(set(blocks) - set(acks) - set(nacks))
    if strays:
        errors.append(f"blocks never sent are there: {strays[:10]}")
    acked_rows = sum(r for r, _ in acks.values())
    if total[1] != expected_checksum & MASK:
        errors.append(f"total checksum {total[1]:016x}, expected {expected_checksum & MASK:016x}")
    if total[0] != acked_rows + landed * block:
        errors.append(f"{total[0]} rows committed, {acked_rows} acknowledged + {landed * block} of failed requests")
    if errors:
        print("; ".join(errors[:20]))
        return 1
    print(
        f"{len(acks)} requests ({acked_rows} rows) acknowledged, each committed exactly once with "
        f"its checksum; {total[0]} rows in all, checksum {total[1]:016x}; 0 keys twice; "
        f"{len(nacks)} requests failed ({absent} left nothing, {landed} landed whole)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
