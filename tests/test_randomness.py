"""Random identifiers: well-formed, distinct, time-ordered where promised, fork-safe."""

from __future__ import annotations

import os
import uuid

import pytest

from certbound.randomness import RandomPool, random_token, time_ordered_uuid


def test_time_ordered_uuid_is_version_7_and_ordered_by_millisecond() -> None:
    values = [time_ordered_uuid() for _ in range(2000)]
    assert len(set(values)) == 2000
    for value in values:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    stamps = [uuid.UUID(v).int >> 80 for v in values]
    assert stamps == sorted(stamps)


def test_random_token_length_and_alphabet() -> None:
    token = random_token(18)
    assert len(token) == 24
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_pool_hands_out_each_byte_once_across_refills() -> None:
    pool = RandomPool(chunk=64)
    taken = b"".join(pool.take(16) for _ in range(40))
    chunks = {taken[i : i + 16] for i in range(0, len(taken), 16)}
    assert len(chunks) == 40
    assert len(pool.take(100)) == 100  # larger than a chunk: straight from the kernel


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_does_not_reuse_the_parents_pool() -> None:
    time_ordered_uuid()  # the pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, random_token(16).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_token(16)
