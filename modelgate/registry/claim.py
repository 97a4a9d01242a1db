"""``claim.json``: which publish holds a version while it uploads, kept alive by heartbeats.

Of concurrent publishes of one version exactly one writes the claim (``If-None-Match: *``).
The holder renews it (``If-Match`` on its ETag) every ``lease / 6`` seconds from a background
thread, so a stalled but living publish keeps it. Another publish takes a held claim over
(``If-Match`` on the ETag it judged) only when

* its owner is **provably dead**: the claim names this host (host name, kernel boot id and PID
  namespace all equal) and its process is gone, a zombie, or a different process with the same
  pid (its start time in ``/proc/<pid>/stat`` differs); or it names this very process and no
  publish of this process holds that token any more; or
* its **lease expired**: the last renewal is older than the lease, measured by the S3 server's
  clock (the object's Last-Modified against the response's Date), so client clock skew cannot
  make a live claim look old.

A live publish is therefore never taken over: it is either verifiably running here, or renewing.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from modelgate.evidence import utcnow
from modelgate.process_owner import Owner, this_owner, why_dead
from modelgate.registry import layout, store
from modelgate.registry.config import MAX_CLAIM_LEASE_S, MIN_CLAIM_LEASE_S, RegistryConfig
from modelgate.registry.errors import VersionExists

_LIVE: set[str] = set()  # tokens of the publishes this process is running right now
_LIVE_LOCK = threading.Lock()


class Claim(BaseModel):
    """Who is publishing a version right now (``claim.json``). Older claims lack the owner and heartbeat."""

    token: str
    run_id: str
    root_digest: str
    actor: str
    started_at: datetime
    heartbeat_at: datetime | None = None
    lease_s: float | None = None
    owner: Owner | None = None


def _is_live(token: str) -> bool:
    with _LIVE_LOCK:
        return token in _LIVE


def dead_owner(claim: Claim) -> str | None:
    """Why the claim's owner is provably dead, or None when it may be alive (or is on another host)."""
    owner = claim.owner
    if owner is None:
        return None
    me = this_owner()
    if owner.host_id and owner.host_id == me.host_id and owner.pid == me.pid and owner.pid_start == me.pid_start:
        where = f"process {owner.pid} on {owner.host}"
        return None if _is_live(claim.token) else f"{where} (this process) no longer runs that publish"
    return why_dead(owner)


def _lease_of(claim: Claim | None, default: float) -> float:
    """The owner's own lease: it renews at that pace, so a taker's shorter lease must not apply to it."""
    lease = claim.lease_s if claim is not None and claim.lease_s else default
    return min(MAX_CLAIM_LEASE_S, max(MIN_CLAIM_LEASE_S, lease))


def _age_s(stored: store.Stored, claim: Claim | None) -> float:
    now = utcnow()
    age = stored.age_s(now)
    if age is not None:
        return age
    last = (claim.heartbeat_at or claim.started_at) if claim is not None else None
    return (now - last).total_seconds() if last is not None and last.tzinfo else float("inf")


def _parse(body: bytes) -> Claim | None:
    try:
        return Claim.model_validate_json(body)
    except ValidationError:
        return None  # an unreadable claim protects nothing beyond its lease


def _takeover_reason(claim: Claim | None, stored: store.Stored, default_lease: float) -> tuple[str | None, str]:
    """(why the claim may be taken over or None, a description of its holder for the refusal)."""
    lease = _lease_of(claim, default_lease)
    age = _age_s(stored, claim)
    if claim is not None and (dead := dead_owner(claim)) is not None:
        return f"its owner is dead: {dead}", ""
    if age > lease:
        return f"its lease expired (last renewed {age:.0f} s ago, lease {lease:g} s)", ""
    if claim is None:
        return None, f"an unreadable claim (written {age:.0f} s ago, lease {lease:g} s)"
    who = f" (pid {claim.owner.pid} on {claim.owner.host})" if claim.owner else ""
    return None, f"run {claim.run_id}{who}, renewed {age:.0f} s ago, lease {lease:g} s"


def new_claim(run_id: str, root_digest: str, who: str, lease_s: float) -> Claim:
    now = utcnow()
    return Claim(
        token=uuid.uuid4().hex,
        run_id=run_id,
        root_digest=root_digest,
        actor=who,
        started_at=now,
        heartbeat_at=now,
        lease_s=lease_s,
        owner=this_owner(),
    )


def take_claim(
    client: Any, bucket: str, name: str, version: str, mine: Claim, lease_s: float
) -> tuple[str, str | None]:
    """(ETag of our claim, why a held one was taken over or None); ``VersionExists`` while another publish lives."""
    key = layout.claim_key(name, version)
    body = mine.model_dump_json(indent=2).encode()
    for _ in range(3):
        try:
            return store.put_bytes(client, bucket, key, body, if_none_match=True), None
        except Exception as exc:
            if not store.precondition_failed(exc):
                raise
        stored = store.get_stored(client, bucket, key)
        if stored is None:
            continue  # released between our write and our read: try again
        reason, holder = _takeover_reason(_parse(stored.body), stored, lease_s)
        if reason is None:
            raise VersionExists(f"{name}@{version} is being published by {holder}")
        try:
            return store.put_bytes(client, bucket, key, body, if_match=stored.etag), reason
        except Exception as exc:
            if not store.precondition_failed(exc):
                raise
            raise VersionExists(
                f"{name}@{version}: the claim changed while taking it over (renewed by its owner, or taken first)"
            ) from exc
    raise VersionExists(f"{name}@{version}: the claim keeps changing, retry later")


def still_mine(client: Any, bucket: str, name: str, version: str, mine: Claim) -> bool:
    found = store.get_bytes(client, bucket, layout.claim_key(name, version))
    held = _parse(found[0]) if found else None
    return held is not None and held.token == mine.token


@dataclass
class Heartbeat:
    """Renews a claim every ``interval`` seconds until stopped; sets ``lost`` when someone else holds it."""

    client: Any
    bucket: str
    key: str
    claim: Claim
    etag: str
    interval: float
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelgate-claim-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.claim.heartbeat_at = utcnow()
            body = self.claim.model_dump_json(indent=2).encode()
            try:
                self.etag = store.put_bytes(self.client, self.bucket, self.key, body, if_match=self.etag)
            except Exception as exc:  # noqa: BLE001 - a transient failure is retried at the next beat
                if store.precondition_failed(exc):
                    self.lost.set()  # taken over (our lease ran out): the publish must not commit
                    return


@dataclass(frozen=True)
class Held:
    """A claim this process holds: ``taken_over`` says why a previous holder's claim was replaced."""

    claim: Claim
    taken_over: str | None
    heartbeat: Heartbeat

    @property
    def lost(self) -> threading.Event:
        return self.heartbeat.lost


@contextlib.contextmanager
def holding(
    client: Any, config: RegistryConfig, name: str, version: str, run_id: str, root_digest: str, who: str
) -> Iterator[Held]:
    """Take the version's claim and keep it renewed while the ``with`` block runs; always stop renewing after."""
    mine = new_claim(run_id, root_digest, who, config.claim_lease_s)
    with _LIVE_LOCK:  # registered before the claim exists: a racing taker must see this publish as alive
        _LIVE.add(mine.token)
    try:
        etag, taken_over = take_claim(client, config.bucket, name, version, mine, config.claim_lease_s)
        beat = Heartbeat(client, config.bucket, layout.claim_key(name, version), mine, etag, config.heartbeat_s)
        beat.start()
        try:
            yield Held(mine, taken_over, beat)
        finally:
            beat.stop()
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(mine.token)
