"""The SLA calculator: a case's deadlines, breaches and escalations as a pure function of its
history (DESIGN.md §4: "SLA figures must be computable again from the event log").

The input is what happened to the case, each with the world time it happened (`at`), in any
order; the calculator sorts by (at, seq). A late, out-of-order or replayed fact therefore
gives the same figures as the same facts delivered in order, and recomputing after every
change is all it takes to keep the timers right.

Method
- A *round* is one run of the clock: the first round starts at the filing (the earliest, if
  the complaint was filed through two channels); every reopening starts a new round, with
  fresh deadlines and the ladder back at the handler.
- The clock is the severity's (`SlaPolicy.clock`): business hours of working days on the
  working calendar (`shared.workcal`: nights, weekends and public holidays stand still,
  make-up working days run; whole days of an allowance are working days), or continuous
  calendar time for cases that cannot wait (critical: fire, injury).
- Only *active* time counts: time in pending_customer (pended → resumed) is paused. A deadline
  is the instant at which the active time since the round started reaches its allowance; while
  the case is paused the next deadlines are unknown (None) until it resumes.
- Breaches: not acknowledged by `ack_due` (acknowledge), not resolved by `resolve_due` (resolve).
  Resolving at the deadline instant is on time.
- Ladder: handler (0) → supervisor (1) → department head (2) → superior leader (3). Each
  breach moves the case one level up. Past the resolve deadline every level it reaches has
  its own allowance (supervisor_within, department_head_within of active time) before the
  next level up is told, until the superior leader. Resolution stops the clock: steps due
  after it never happen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from services.complaints.config import SlaPolicy
from shared.workcal import WorkingCalendar

# The facts the clock depends on; others in a case's history (comments, documents) do not.
SLA_KINDS = frozenset({"filed", "acknowledged", "assigned", "pended", "resumed", "resolved", "reopened", "closed"})

LEVELS: tuple[str, ...] = ("handler", "supervisor", "department_head", "superior_leader")
LEVEL_NAMES: tuple[str, ...] = ("handler", "supervisor", "department head", "superior leader")
TOP_LEVEL = len(LEVELS) - 1

Breach = Literal["acknowledge", "resolve"]
# Which deadline a step follows: the SLA's two (acknowledge, resolve) are the breaches; past
# the resolve deadline the further steps follow each level's own deadline.
Deadline = Literal["acknowledge", "resolve", "level"]


@dataclass(frozen=True, slots=True)
class SlaFact:
    kind: str
    at: datetime
    seq: int = 0  # the order it was recorded: breaks ties between facts at the same instant


@dataclass(frozen=True, slots=True)
class Step:
    """One escalation: at `due`, if the case is still unresolved, it goes to `level`."""

    round: int
    level: int
    due: datetime
    deadline: Deadline
    next_due: datetime | None = None  # the next step up, if this one does not help either

    @property
    def breach(self) -> Breach:
        """What was not done in time: acknowledging, or (at every level past it) resolving."""
        return "acknowledge" if self.deadline == "acknowledge" else "resolve"

    @property
    def key(self) -> tuple[int, int]:
        return (self.round, self.level)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]

    @property
    def role(self) -> str:
        return LEVELS[self.level]


@dataclass(frozen=True, slots=True)
class Round:
    number: int
    started_at: datetime
    ended_at: datetime | None  # the next round's start (a reopening)
    ack_due_at: datetime | None  # None while paused before it could be reached
    resolve_due_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    pauses: tuple[tuple[datetime, datetime | None], ...]
    steps: tuple[Step, ...]

    def level_at(self, now: datetime) -> int:
        return sum(1 for s in self.steps if s.due <= now)

    def breached(self, breach: Breach, now: datetime) -> bool:
        return any(s.deadline == breach and s.due <= now for s in self.steps)

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1][1] is None

    def active_seconds(self, until: datetime) -> float:
        return _active(self.started_at, until, self.pauses).total_seconds()

    @property
    def ack_seconds(self) -> float | None:
        return self.active_seconds(self.acknowledged_at) if self.acknowledged_at else None

    @property
    def resolve_seconds(self) -> float | None:
        return self.active_seconds(self.resolved_at) if self.resolved_at else None


@dataclass(frozen=True, slots=True)
class SlaFigures:
    rounds: tuple[Round, ...]
    now: datetime
    steps: tuple[Step, ...] = field(default=())

    @property
    def current(self) -> Round:
        return self.rounds[-1]

    @property
    def level(self) -> int:
        return self.current.level_at(self.now)

    def breaches(self) -> list[tuple[int, Breach, datetime]]:
        """Every SLA breach so far, all rounds: (round, acknowledge|resolve, the deadline missed)."""
        return [(s.round, s.breach, s.due) for s in self.steps if s.deadline != "level" and s.due <= self.now]

    @property
    def ack_breached(self) -> bool:
        return self.current.breached("acknowledge", self.now)

    @property
    def resolve_breached(self) -> bool:
        return self.current.breached("resolve", self.now)

    def due_steps(self) -> list[Step]:
        """The current round's escalations that are due by now."""
        return [s for s in self.current.steps if s.due <= self.now]

    def next_wakeup(self, announced: set[tuple[int, int]]) -> datetime | None:
        """When the figures next change by themselves: the earliest step of the current round
        that is not announced yet (even if already due) or still ahead."""
        candidates = [s.due for s in self.current.steps if s.key not in announced or s.due > self.now]
        return min(candidates, default=None)


def working_seconds(r: Round, until: datetime | None, calendar: WorkingCalendar) -> float | None:
    """The round's active time from its start to `until` counted in working time on `calendar`
    (business hours of working days: nights, weekends and public holidays do not count, make-up
    working days do), pauses left out; None without `until`. The KPIs' mean times in working time."""
    if until is None:
        return None
    total = calendar.working_time_between(r.started_at, until)
    for p0, p1 in r.pauses:
        lo, hi = max(p0, r.started_at), min(p1 or until, until)
        if hi > lo:
            total -= calendar.working_time_between(lo, hi)
    return max(total, timedelta(0)).total_seconds()


def _active(start: datetime, until: datetime, pauses: Iterable[tuple[datetime, datetime | None]]) -> timedelta:
    total = until - start
    for p0, p1 in pauses:
        lo, hi = max(p0, start), min(p1 or until, until)
        if hi > lo:
            total -= hi - lo
    return max(total, timedelta(0))


class SlaClock(Protocol):
    """How a policy's allowances are counted: around the clock, or in business hours."""

    def duration(self, allowance: timedelta) -> timedelta:
        """An allowance as this clock's running time."""
        ...

    def add(self, start: datetime, allowance: timedelta) -> datetime: ...

    def between(self, a: datetime, b: datetime) -> timedelta: ...


class ContinuousClock:
    """Calendar time, 24/7: for cases that cannot wait for a working day (fire, injury)."""

    def duration(self, allowance: timedelta) -> timedelta:
        return allowance

    def add(self, start: datetime, allowance: timedelta) -> datetime:
        return start + allowance

    def between(self, a: datetime, b: datetime) -> timedelta:
        return b - a


@dataclass(frozen=True)
class WorkingClock:
    """Business hours of working days on a working calendar (nights, weekends and public
    holidays stand still, make-up working days run). Whole days of an allowance are working
    days: P2D filed Monday 10:00 is due Wednesday 10:00."""

    calendar: WorkingCalendar

    def duration(self, allowance: timedelta) -> timedelta:
        return self.calendar.working_duration(allowance)

    def add(self, start: datetime, allowance: timedelta) -> datetime:
        return self.calendar.add_working_time(start, allowance)

    def between(self, a: datetime, b: datetime) -> timedelta:
        return self.calendar.working_time_between(a, b)


CONTINUOUS = ContinuousClock()


def clock_of(policy: SlaPolicy) -> SlaClock:
    """The clock a severity's policy runs on (its region's working calendar, or 24/7)."""
    if policy.clock == "continuous":
        return CONTINUOUS
    return WorkingClock(WorkingCalendar.load(policy.calendar_region))


def instant_after(
    start: datetime, allowance: timedelta, pauses: Iterable[tuple[datetime, datetime | None]],
    clock: SlaClock = CONTINUOUS,
) -> datetime | None:
    """The instant at which `allowance` of active time has passed since `start` on `clock`,
    skipping the pauses; None if it falls after a pause that has not ended."""
    cursor, left = start, clock.duration(allowance)
    for p0, p1 in pauses:
        if clock.add(cursor, left) <= p0:
            break
        if p0 > cursor:
            left -= clock.between(cursor, p0)
        if p1 is None:
            return None
        cursor = max(cursor, p1)
    return clock.add(cursor, left)


def compute(facts: Iterable[SlaFact], policy: SlaPolicy, now: datetime, clock: SlaClock | None = None) -> SlaFigures:
    """The case's SLA figures as of `now`, from its history (any order), on the policy's clock
    (or `clock`, if given)."""
    clock = clock or clock_of(policy)
    ordered = sorted((f for f in facts if f.kind in SLA_KINDS), key=lambda f: (f.at, f.seq))
    filed = [f.at for f in ordered if f.kind == "filed"]
    if not filed:
        raise ValueError("a case's history must contain its filing ('filed') to compute its SLA")
    first = min(filed)
    starts = [first] + [f.at for f in ordered if f.kind == "reopened" and f.at >= first]
    rounds: list[Round] = []
    for number, started_at in enumerate(starts):
        ended_at = starts[number + 1] if number + 1 < len(starts) else None
        in_round = [
            f for f in ordered
            if f.kind not in ("filed", "reopened")
            and (number == 0 or f.at >= started_at)
            and (ended_at is None or f.at < ended_at)
        ]
        rounds.append(_round(number, max(started_at, first), ended_at, in_round, policy, clock))
    steps = tuple(s for r in rounds for s in r.steps)
    return SlaFigures(tuple(rounds), now, steps)


def _round(
    number: int, start: datetime, ended_at: datetime | None, facts: list[SlaFact], policy: SlaPolicy,
    clock: SlaClock,
) -> Round:
    def first(kind: str) -> datetime | None:
        return next((max(f.at, start) for f in facts if f.kind == kind), None)

    acknowledged, resolved, closed = first("acknowledged"), first("resolved"), first("closed")
    # The clock stops at the resolution (or a close, or the next round), whichever is first.
    stops = [t for t in (resolved, closed, ended_at) if t is not None]
    stop = min(stops) if stops else None

    pauses: list[tuple[datetime, datetime | None]] = []
    paused_since: datetime | None = None
    for f in facts:
        if stop is not None and f.at >= stop:
            break
        if f.kind == "pended" and paused_since is None:
            paused_since = max(f.at, start)
        elif f.kind == "resumed" and paused_since is not None:
            pauses.append((paused_since, f.at))
            paused_since = None
    if paused_since is not None:
        pauses.append((paused_since, stop))

    def live(due: datetime | None) -> bool:
        return due is not None and (stop is None or due < stop)

    ack_due = instant_after(start, policy.acknowledge_within, pauses, clock)
    resolve_due = instant_after(start, policy.resolve_within, pauses, clock)
    chain: list[tuple[int, datetime, Deadline]] = []
    level = 0
    if live(ack_due) and (acknowledged is None or acknowledged > ack_due):  # type: ignore[operator]
        level += 1
        chain.append((level, ack_due, "acknowledge"))  # type: ignore[arg-type]
    if live(resolve_due):
        level += 1
        chain.append((level, resolve_due, "resolve"))  # type: ignore[arg-type]
        allowance = policy.resolve_within
        while level < TOP_LEVEL:
            allowance += (policy.supervisor_within, policy.department_head_within)[level - 1]
            due = instant_after(start, allowance, pauses, clock)
            if not live(due):
                break
            level += 1
            chain.append((level, due, "level"))  # type: ignore[arg-type]
    steps = tuple(
        Step(number, lvl, due, deadline, chain[i + 1][1] if i + 1 < len(chain) else None)
        for i, (lvl, due, deadline) in enumerate(chain)
    )
    return Round(number, start, ended_at, ack_due, resolve_due, acknowledged, resolved, tuple(pauses), steps)
