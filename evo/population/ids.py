"""Individual ids: claims in ``ids/<shard>/<id>`` (authoritative) and the ``next_id`` hint.

An id is claimed by creating ``ids/<id // 1000>/<id>`` as a hard link to the shard's ``.claim``
file (atomic and exclusive, also on NFS, and it allocates nothing), or, where hard links are
refused, as an empty file created with O_EXCL.  Ids stay unique even when the ``next_id`` hint
was updated without mutual exclusion; the individuals budget rests on them.
"""

from __future__ import annotations

import contextlib
import errno
import os

from evo.base.files import read_bytes, unlink_quiet
from evo.population.layout import IDS, NEXT_ID_FILE, StoreError, shard
from evo.population.section import SectionFiles

__all__ = ["IdClaims"]


class IdClaims:
    """Claims and the next-id hint of the population at ``root``."""

    def __init__(self, root: str, section: SectionFiles) -> None:
        self.root = root
        self.path = os.path.join(root, IDS)
        self.section = section
        #: hard links work here (else claims are empty files)
        self.link_claims = True

    def try_claim(self, n: int) -> bool:
        """Claim id ``n``: True if it is ours now, False if someone else has it."""
        d = os.path.join(self.path, shard(n))
        path = os.path.join(d, str(n))
        for _ in range(3):
            try:
                if self.link_claims:
                    os.link(os.path.join(d, ".claim"), path)
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:  # a new shard, or its .claim file is not there yet
                os.makedirs(d, exist_ok=True)
                with contextlib.suppress(OSError):
                    os.close(os.open(os.path.join(d, ".claim"), os.O_WRONLY | os.O_CREAT, 0o666))
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
                    raise
                self.link_claims = False
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        return True

    def claim(self, hint: int) -> int:
        """Claim the first free id from ``hint`` on."""
        n = max(hint, 1)
        for _ in range(100000):
            if self.try_claim(n):
                return n
            try:
                taken = [int(x) for x in os.listdir(os.path.join(self.path, shard(n))) if x.isdigit()]
            except OSError:
                taken = []
            n = max([n] + taken) + 1
        raise StoreError(f"could not claim a new individual id under {self.path}")

    def unclaim(self, i: int) -> None:
        """Give back a claimed id that no individual got (the step was given up), moving the
        next-id hint back to it so that the next claim takes it: no id is skipped.  (A claim
        that then finds the hint's successors taken probes past them.)"""
        unlink_quiet(os.path.join(self.path, shard(i), str(i)))
        if self.read_next() > i:
            self.write_next(i)

    def read_next(self) -> int:
        """The next id hint (claims make allocation safe even when it is stale)."""
        try:
            if self.section.active:
                data = os.pread(self.section.fd(NEXT_ID_FILE), 64, 0)
            else:
                data = read_bytes(os.path.join(self.root, NEXT_ID_FILE))
            return max(1, int(data.strip()))
        except (OSError, ValueError):
            return 1

    def write_next(self, n: int) -> None:
        """Overwrite the hint in place (fixed width, one small write): a hint needs no rename."""
        with contextlib.suppress(OSError):
            if self.section.active:
                os.pwrite(self.section.fd(NEXT_ID_FILE), b"%-20d\n" % n, 0)
                return
            fd = os.open(os.path.join(self.root, NEXT_ID_FILE), os.O_WRONLY | os.O_CREAT, 0o666)
            try:
                os.pwrite(fd, b"%-20d\n" % n, 0)
            finally:
                os.close(fd)
