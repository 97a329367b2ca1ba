import pytest

from ops.heap import release_free_pages
from ops.libc import libc

PAGE = 4096


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


@pytest.mark.skipif(not hasattr(libc(), "malloc_trim"),
                    reason="malloc_trim is glibc's: elsewhere release_free_pages does nothing")
def test_freed_heap_pages_go_back_to_the_system():
    # 64 KiB blocks come from malloc's heap (under its mmap threshold); freeing every other one
    # leaves holes between live blocks, which glibc keeps resident: no heap top to trim
    blocks = [bytearray(b"x" * (64 * 1024)) for _ in range(1600)]
    del blocks[::2]
    before = _rss_bytes()
    assert release_free_pages() is True
    after = _rss_bytes()
    assert before - after > 25 * 1024 * 1024  # of the 50 MiB freed, at least half handed back
    assert len(blocks) == 800 and all(b[-1] == ord("x") for b in blocks)  # what is live stays
