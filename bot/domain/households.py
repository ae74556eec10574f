"""Households (户): binding by address, the representative (户代表), leaving, import.

A household's members and representative live in its own record, so binding,
leaving and a handover are each one compare-and-set (see :mod:`storage.households`):
the first resident to bind becomes the representative even when two bind at once.
A resident belongs to one household; binding elsewhere leaves the old one first.
When the representative leaves, the member who bound earliest takes over (and is
told); a household left with nobody keeps its address and waits for the next binder.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum

from bot.config import AssemblyConfig
from bot.domain.errors import DomainError, Invalid, NotFound, Refused
from bot.domain.notify import Notifier
from bot.errors import ConflictError
from bot.redact import mask
from storage.households import (
    Household,
    HouseholdRepo,
    Member,
    Membership,
    MembershipRepo,
    Unchanged,
)
from storage.repos import AuditRepo

log = logging.getLogger("bot.domain.households")

MAX_NAME = 12
MAX_PART = 6
MAX_IMPORT_ROWS = 50_000
IMPORT_CONCURRENCY = 32
OPENID = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
PART = re.compile(r"^[0-9A-Z]{1,6}$")
TAG = re.compile(r"^[^\s:;,，；、]{1,20}$")

_CN_DIGIT = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_RUN = re.compile("[零〇一二两三四五六七八九十]+")

# Column names staff may use in an import's header row (English or Chinese).
_HEADERS = {
    "building": "building",
    "楼栋": "building",
    "栋": "building",
    "楼号": "building",
    "unit": "unit",
    "单元": "unit",
    "room": "room",
    "房号": "room",
    "室": "room",
    "门牌": "room",
    "representative": "representative",
    "representative_openid": "representative",
    "openid": "representative",
    "户代表": "representative",
    "grid": "grid",
    "网格": "grid",
    "tags": "tags",
    "标签": "tags",
}
_POSITIONAL = ("building", "unit", "room", "representative")

NEW_REPRESENTATIVE = (
    "您现在是{label}的户代表：坝坝会的参会答复和投票由您代表全家。回复“我的家庭”查看。"
)


class NotBound(Refused):
    """The resident has not bound a household yet."""


class NotRepresentative(Refused):
    """Only the household's representative may do this."""


@dataclass(frozen=True, slots=True)
class Address:
    building: str
    unit: str
    room: str

    @property
    def id(self) -> str:
        return "-".join(p for p in (self.building, self.unit, self.room) if p)

    @property
    def label(self) -> str:
        return Household(self.id, self.building, self.unit, self.room).label


class Outcome(Enum):
    REPRESENTATIVE = "representative"  # bound, and the household's representative
    MEMBER = "member"  # bound as a member; someone else represents the household
    ALREADY = "already"  # was bound there already


@dataclass(frozen=True, slots=True)
class BindResult:
    outcome: Outcome
    household: Household
    left: Household | None = None  # the household they left to bind this one


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    result: str  # created / skipped / invalid
    household: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: list[ImportRow] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for r in self.rows if r.result == result)


def normalize_text(text: str) -> str:
    """Full-width to ASCII (NFKC), Chinese numerals to digits (三栋 → 3栋, 十二 → 12), upper case."""
    folded = unicodedata.normalize("NFKC", text).strip().upper()

    def digits(m: re.Match[str]) -> str:
        run = m.group(0)
        if "十" not in run:
            return "".join(str(_CN_DIGIT[c]) for c in run)
        tens, _, ones = run.partition("十")
        if len(tens) > 1 or len(ones) > 1:
            return run
        return str((_CN_DIGIT[tens] if tens else 1) * 10 + (_CN_DIGIT[ones] if ones else 0))

    return _CN_RUN.sub(digits, folded)


def _part(value: str) -> str:
    """A building, unit or room as stored: no leading zeros on numbers (03 → 3)."""
    value = value.strip()
    return str(int(value)) if value.isascii() and value.isdigit() else value


class HouseholdDesk:
    def __init__(
        self,
        households: HouseholdRepo,
        memberships: MembershipRepo,
        audit: AuditRepo,
        notifier: Notifier,
        config: AssemblyConfig,
        clock: Callable[[], float],
    ) -> None:
        self._households = households
        self._memberships = memberships
        self._audit = audit
        self._notifier = notifier
        self.config = config
        self._clock = clock
        self._pattern = re.compile(config.address_pattern)

    # --- addresses ----------------------------------------------------------------

    def parse(self, text: str) -> Address:
        """The address a resident typed; :class:`Invalid` (with the example) if unreadable."""
        found = self._pattern.search(normalize_text(text)) if len(text) <= 60 else None
        if found is None:
            raise Invalid(
                f"没看懂这个地址。请按“楼栋+单元+房号”发送，例如“{self.config.address_example}”。"
            )
        groups = found.groupdict()
        return Address(
            _part(groups["building"] or ""),
            _part(groups.get("unit") or ""),
            _part(groups["room"] or ""),
        )

    # --- reading ------------------------------------------------------------------

    async def get(self, household_id: str) -> Household:
        household = await self._households.get(household_id)
        if household is None:
            raise NotFound(f"没有 {household_id[:30]} 这一户")
        return household

    async def find(self, address: Address) -> Household | None:
        return await self._households.get(address.id)

    async def lookup(self, household_id: str) -> Household | None:
        return await self._households.get(household_id)

    async def of(self, openid: str) -> Household | None:
        """The resident's household, or None if they have not bound one."""
        pointer = await self._memberships.get(openid)
        if pointer is None:
            return None
        household = await self._households.get(pointer.household)
        if household is None or household.member(openid) is None:
            return None  # a binding a crash left halfway: not bound
        return household

    async def page(self, *, after: str | None, limit: int) -> list[Household]:
        return await self._households.page(after=after, limit=limit)

    async def in_building(self, building: str) -> list[Household]:
        return await self._households.in_building(_part(normalize_text(building)))

    async def in_grid(self, grid: str) -> list[Household]:
        return await self._households.in_grid(grid)

    async def count(self) -> int:
        return await self._households.count()

    async def representatives(self, audience: str) -> list[str]:
        """Representatives' openids for ``all``, ``building:3``, ``grid:g1`` or ``tag:党员户``."""
        kind, _, value = audience.partition(":")
        found: Iterable[Household]
        if audience == "all":
            found = await self._all()
        elif kind == "building" and value:
            found = await self.in_building(value)
        elif kind == "grid" and value:
            found = await self.in_grid(value)
        elif kind == "tag" and value:
            found = [h for h in await self._all() if value in h.tags]
        else:
            raise Invalid(
                f"不认识的对象：{audience[:40]}（all、building:楼栋、grid:网格、tag:标签）"
            )
        return list(dict.fromkeys(h.representative for h in found if h.representative))

    async def _all(self) -> list[Household]:
        found: list[Household] = []
        after: str | None = None
        while True:
            page = await self._households.page(after=after, limit=1000)
            found += page
            if len(page) < 1000:
                return found
            after = page[-1].id

    # --- residents ----------------------------------------------------------------

    async def bind(self, openid: str, address: Address, name: str = "") -> BindResult:
        name = name.strip()[:MAX_NAME]
        now = self._clock()
        current = await self.of(openid)
        if current is not None and current.id == address.id:
            return BindResult(Outcome.ALREADY, current)
        existing = await self.find(address)
        if existing is None and not self.config.open_binding:
            raise NotFound(self._unknown(address))
        if existing is not None and len(existing.members) >= self.config.max_members:
            raise Refused(f"{existing.label}已绑定{len(existing.members)}人，不能再绑定了。")
        left = await self.leave(openid) if current is not None else None
        stale = await self._memberships.get(openid)
        if stale is not None and stale.household != address.id:
            await self._forget(openid, stale.household)
        # The pointer first: it always names the only household that could list them.
        await self._memberships.put(Membership(openid, address.id, now))

        def join(household: Household | None) -> Household:
            if household is None:
                if not self.config.open_binding:
                    raise NotFound(self._unknown(address))
                household = Household(
                    address.id,
                    address.building,
                    address.unit,
                    address.room,
                    created_at=now,
                    created_by=openid,
                )
            if household.member(openid) is not None:
                raise Unchanged
            if len(household.members) >= self.config.max_members:
                raise Refused(f"{household.label}已绑定{len(household.members)}人，不能再绑定了。")
            members = (*household.members, Member(openid, name, now))
            representative = household.representative
            if not representative or household.member(representative) is None:
                representative = openid
            return replace(household, members=members, representative=representative)

        try:
            _, after = await self._households.change(address.id, join)
        except Unchanged:
            after = await self.get(address.id)
        except DomainError:
            await self._memberships.delete(openid, household=address.id)
            raise
        outcome = Outcome.REPRESENTATIVE if after.representative == openid else Outcome.MEMBER
        log.info("%s bound household %s as %s", mask(openid), after.id, outcome.value)
        return BindResult(outcome, after, left)

    async def leave(self, openid: str) -> Household:
        """Leave my household; returns it as it is after."""
        household = await self.of(openid)
        if household is None:
            raise NotBound("您还没有绑定房屋。")
        after = await self._forget(openid, household.id)
        log.info("%s left household %s", mask(openid), household.id)
        return after

    async def hand_over(self, openid: str, to: str) -> Household:
        household = await self.of(openid)
        if household is None:
            raise NotBound("您还没有绑定房屋。")

        def apply(current: Household | None) -> Household:
            if current is None or current.representative != openid:
                raise NotRepresentative("只有户代表可以移交户代表。")
            if to == openid:
                raise Unchanged
            if current.member(to) is None:
                raise Refused("这位成员已经不在您家了，请重新选择。")
            return replace(current, representative=to)

        try:
            _, after = await self._households.change(household.id, apply)
        except Unchanged:
            return household
        log.info("household %s handed over by %s to %s", after.id, mask(openid), mask(to))
        await self._notifier.tell(to, NEW_REPRESENTATIVE.format(label=after.label))
        return after

    # --- staff --------------------------------------------------------------------

    async def set_representative(self, household_id: str, openid: str, *, actor: str) -> Household:
        """Make ``openid`` the representative; a resident not yet bound is bound here."""
        if not isinstance(openid, str) or not OPENID.match(openid):
            raise Invalid("openid 格式不对")
        household = await self.get(household_id)
        now = self._clock()
        if household.member(openid) is None:
            other = await self.of(openid)
            if other is not None:
                raise Refused(f"该居民已绑定{other.label}，请先让其解除绑定")
            stale = await self._memberships.get(openid)
            if stale is not None and stale.household != household_id:
                await self._forget(openid, stale.household)
            await self._memberships.put(Membership(openid, household_id, now))

        def apply(current: Household | None) -> Household:
            if current is None:
                raise NotFound(f"没有 {household_id[:30]} 这一户")
            if current.representative == openid and current.member(openid) is not None:
                raise Unchanged
            members = current.members
            if current.member(openid) is None:
                if len(members) >= self.config.max_members:
                    raise Refused(f"{current.label}已绑定{len(members)}人，不能再绑定了")
                members = (*members, Member(openid, "", now))
            return replace(current, members=members, representative=openid)

        try:
            before, after = await self._households.change(household_id, apply)
        except Unchanged:
            return household
        await self._audit.add(
            actor,
            "household.representative",
            f"household/{household_id}",
            {"from": before.representative if before else "", "to": openid},
            now,
        )
        await self._notifier.tell(openid, NEW_REPRESENTATIVE.format(label=after.label))
        return after

    async def remove_member(self, household_id: str, openid: str, *, actor: str) -> Household:
        household = await self.get(household_id)
        if household.member(openid) is None:
            raise NotFound(f"{household.label}没有这位成员")
        after = await self._forget(openid, household_id)
        await self._audit.add(
            actor,
            "household.remove_member",
            f"household/{household_id}",
            {"openid": openid},
            self._clock(),
        )
        return after

    async def import_csv(self, text: str, *, actor: str) -> ImportReport:
        """Create households from CSV rows: building, unit, room[, representative openid].

        A header row may name the columns instead (building/楼栋, unit/单元, room/房号,
        representative/户代表, grid/网格, tags/标签, tags separated by ``;``). An address
        that exists already is skipped; a row that cannot be read is invalid and writes
        nothing. Returns one line per row.
        """
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        if len(rows) > MAX_IMPORT_ROWS + 1:
            raise Invalid(f"一次最多导入{MAX_IMPORT_ROWS}行，请分批导入")
        columns: tuple[str, ...] = _POSITIONAL
        report: list[ImportRow] = []
        todo: list[tuple[int, Household]] = []
        seen: dict[str, int] = {}
        now = self._clock()
        first = True
        for line, cells in enumerate(rows, 1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if first:
                first = False
                named = [_HEADERS.get(c.lower()) for c in cells]
                if any(named):
                    unknown = [c for c, n in zip(cells, named, strict=True) if n is None]
                    if unknown:
                        raise Invalid(f"不认识的列名：{'、'.join(unknown)[:60]}")
                    columns = tuple(n for n in named if n is not None)
                    if not {"building", "room"} <= set(columns):
                        raise Invalid("表头需要 building（楼栋）和 room（房号）两列")
                    continue
            try:
                household = self._row(dict(_zip(columns, cells)), now, actor)
            except Invalid as exc:
                report.append(ImportRow(line, "invalid", reason=str(exc)))
                continue
            if household.id in seen:
                report.append(
                    ImportRow(line, "skipped", household.id, f"与第{seen[household.id]}行重复")
                )
                continue
            seen[household.id] = line
            report.append(ImportRow(line, "pending", household.id))
            todo.append((len(report) - 1, household))

        gate = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def create(position: int, household: Household) -> None:
            async with gate:
                result, reason = await self._create(household)
            report[position] = ImportRow(report[position].line, result, household.id, reason)

        await asyncio.gather(*(create(p, h) for p, h in todo))
        done = ImportReport(report)
        await self._audit.add(
            actor,
            "household.import",
            "households",
            {k: done.count(k) for k in ("created", "skipped", "invalid")},
            now,
        )
        log.info(
            "%s imported households: %s created, %s skipped, %s invalid",
            actor,
            done.count("created"),
            done.count("skipped"),
            done.count("invalid"),
        )
        return done

    def _row(self, row: dict[str, str], now: float, actor: str) -> Household:
        if "" in row:
            raise Invalid("多余的列（每行：楼栋,单元,房号[,户代表openid]）")
        parts = []
        for name, label in (("building", "楼栋"), ("unit", "单元"), ("room", "房号")):
            value = _part(normalize_text(row.get(name, "")))
            if name != "unit" and not value:
                raise Invalid(f"缺少{label}")
            if value and not PART.match(value):
                raise Invalid(f"{label}“{value[:10]}”只能是1到{MAX_PART}位数字或字母")
            parts.append(value)
        address = Address(*parts)
        representative = row.get("representative", "")
        if representative and not OPENID.match(representative):
            raise Invalid(f"户代表 openid“{representative[:20]}”格式不对")
        tags = tuple(t.strip() for t in re.split(r"[;；、]", row.get("tags", "")) if t.strip())
        if any(not TAG.match(t) for t in tags):
            raise Invalid("标签最多20个字，不能含空格或标点")
        grid = row.get("grid", "")
        if len(grid) > 40:
            raise Invalid("网格最多40个字")
        return Household(
            address.id,
            address.building,
            address.unit,
            address.room,
            representative=representative,
            members=(Member(representative, "", now),) if representative else (),
            grid=grid,
            tags=tags,
            created_at=now,
            created_by=f"import:{actor}",
        )

    async def _create(self, household: Household) -> tuple[str, str]:
        if await self._households.get(household.id) is not None:
            return "skipped", "已存在"
        representative = household.representative
        if representative and not await self._memberships.claim(
            Membership(representative, household.id, household.created_at)
        ):
            other = await self.of(representative)
            if other is not None:
                return "invalid", f"户代表已绑定{other.label}"
            # A pointer a crash left behind: the household it names does not list them.
            pointer = await self._memberships.get(representative)
            if pointer is not None:
                await self._forget(representative, pointer.household)
            await self._memberships.put(
                Membership(representative, household.id, household.created_at)
            )
        try:
            await self._households.insert(household)
        except ConflictError:
            if representative:
                await self._memberships.delete(representative, household=household.id)
            return "skipped", "已存在"
        return "created", ""

    # --- helpers ------------------------------------------------------------------

    def _unknown(self, address: Address) -> str:
        return f"没有找到{address.label}。请核对地址，或联系社区工作人员登记。"

    async def _forget(self, openid: str, household_id: str) -> Household:
        """Take ``openid`` off the household (handing over if they represented it)."""
        promoted: list[str] = []

        def apply(current: Household | None) -> Household:
            promoted.clear()
            if current is None or current.member(openid) is None:
                raise Unchanged
            members = tuple(m for m in current.members if m.openid != openid)
            representative = current.representative
            if representative == openid or not representative:
                representative = members[0].openid if members else ""
                if representative:
                    promoted.append(representative)
            return replace(current, members=members, representative=representative)

        try:
            _, after = await self._households.change(household_id, apply)
        except Unchanged:
            found = await self._households.get(household_id)
            after = found if found is not None else Household(household_id, "", "", "")
        await self._memberships.delete(openid, household=household_id)
        for heir in promoted:
            log.info("household %s: %s is the representative now", household_id, mask(heir))
            await self._notifier.tell(heir, NEW_REPRESENTATIVE.format(label=after.label))
        return after


def _zip(columns: tuple[str, ...], cells: list[str]) -> list[tuple[str, str]]:
    """Pairs of column name and cell; cells beyond the named columns pair with ""."""
    pairs = list(zip(columns, cells, strict=False))
    pairs += [("", c) for c in cells[len(columns) :] if c]
    return pairs
