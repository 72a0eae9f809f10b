"""Retry-herd simulation: does the error page's retrying become the next outage's load?

10,000 clients hit the error page within the same second at the start of an outage
lasting 30 s, 2 min or 10 min. Each client probes on its schedule; a probe at or
after the recovery succeeds and the client navigates back (it "arrives"). Schedules:

* gracefail: ``RetryPolicy.delay_bounds`` itself (the formula the page's script uses):
  the wait before probe n+1 is uniform in ``delay_bounds(n)``; the page stops probing
  ``give_up_after`` seconds after it was shown;
* a fixed 5 s meta refresh;
* Chrome's net-error auto-reload: 1 s, 5 s, 30 s, 1 min, 5 min, 10 min, then every 30 min,
  no jitter.

Reported for each: the herd (the largest share of all clients arriving within any one
second after recovery), the load (probes per client per minute while the outage is
more than a minute old), and the recovery lag (median and p90 of arrival minus
recovery; a client that gave up never arrives by itself and counts as infinite). A
probe's round trip is taken as zero. A grid of RetryPolicy values, and a cap that
grows with the page's age, are tried against the same goals to choose the defaults.

Tabs per user (issue 11): each user has the error page open in ``tabs`` tabs of one
browser. Without coordination every tab probes on its own schedule and comes back on its
own; with it (the page's shared prober) one schedule per user probes, and when it
succeeds every tab of that user comes back at that moment, those showing another URL
after one check of their own (counted as a probe each). Reported per user: probes per
minute after the first minute, and per page: the herd and the recovery lag.

    python -m benchmarks.herd [--plot docs/performance-herd.png] [--tabs 1,4,10]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gracefail import RetryPolicy

CLIENTS = 10_000
OUTAGES = (30.0, 120.0, 600.0)
EXTRA_OUTAGE = 1200.0  # beyond the goals: what a longer outage does to each schedule
CHROME = (1.0, 5.0, 30.0, 60.0, 300.0, 600.0, 1800.0)
FIXED_REFRESH = 5.0
SEEDS = (1, 2, 3)

# Tabs per user compared with and without the shared prober, over a 10 min outage.
TABS_PER_USER = (1, 4, 10)
TABS_OUTAGE = 600.0

# Outages end before the page gives up: 10 min plus the p90 lag, with room for a longer one.
RECOMMENDED_GIVE_UP = 1800.0

GOAL_HERD = 0.05
GOAL_LOAD = 2.0
GOAL_P50 = 20.0
GOAL_P90 = 45.0


@dataclass(frozen=True)
class Schedule:
    """How one client probes: ``next_delay(attempts, age, rng, n)`` -> seconds to wait."""

    name: str
    next_delay: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]
    give_up_after: float = math.inf


def gracefail_schedule(
    policy: RetryPolicy, name: str | None = None, *, growth: float = 0.0, cap_max: float = 0.0
) -> Schedule:
    """The page's schedule from ``policy.delay_bounds``; with ``growth`` > 0 the cap grows
    with the page's age to ``max(cap, growth * age)``, at most ``cap_max`` (a proposal)."""
    bounds = [policy.delay_bounds(n) for n in range(64)]
    low = np.array([b[0] for b in bounds])
    high = np.array([b[1] for b in bounds])

    def next_delay(attempts: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        index = np.minimum(attempts, 63)
        lo, hi = low[index], high[index]
        if growth > 0:
            grown = np.minimum(cap_max, np.maximum(policy.cap, growth * age))
            hi = np.where(
                attempts >= 1, np.minimum(policy.base * 2.0 ** np.minimum(attempts, 60), grown), hi
            )
        return lo + rng.random(attempts.shape[0]) * (hi - lo)

    label = name or (
        f"gracefail (retry_after={policy.retry_after}, base={policy.base:g}, cap={policy.cap:g}"
        + (f" growing {growth:g}x age to {cap_max:g}" if growth else "")
        + f", give_up_after={policy.give_up_after:g})"
    )
    return Schedule(label, next_delay, policy.give_up_after)


def fixed_schedule(every: float = FIXED_REFRESH) -> Schedule:
    def next_delay(attempts: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.full(attempts.shape[0], every)

    return Schedule(f"fixed {every:g} s meta refresh", next_delay)


def chrome_schedule() -> Schedule:
    steps = np.array(CHROME)

    def next_delay(attempts: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return steps[np.minimum(attempts, len(steps) - 1)]

    return Schedule(
        "Chrome net-error reload (1 s, 5 s, 30 s, 1 min, 5 min, 10 min, 30 min)", next_delay
    )


@dataclass
class Outcome:
    """One schedule against one outage."""

    schedule: str
    outage: float
    herd: float  # share of all clients in the busiest second after recovery
    load: float | None  # probes per client per minute while the outage is > 1 min old
    lag_p50: float  # seconds; inf when more than half never come back by themselves
    lag_p90: float
    gave_up: float  # share of clients that stopped probing before recovery
    probes: np.ndarray = field(repr=False)  # every probe's time (failed ones and the last)
    # Median over users of the time from their first tab back to their last (tabs > 1).
    spread_p50: float = 0.0

    @property
    def met(self) -> dict[str, bool | None]:
        return {
            "herd": self.herd <= GOAL_HERD,
            "load": None if self.load is None else self.load <= GOAL_LOAD,
            "p50": self.lag_p50 <= GOAL_P50,
            "p90": self.lag_p90 <= GOAL_P90,
        }

    @property
    def all_met(self) -> bool:
        return all(v is not False for v in self.met.values())


def simulate(
    schedule: Schedule,
    outage: float,
    seed: int = 1,
    clients: int = CLIENTS,
    *,
    tabs: int = 1,
    coordinated: bool = False,
) -> Outcome:
    """``clients`` users, each with the page in ``tabs`` tabs (see the module docs): the load
    is per user, the herd and the lags per page."""
    users = clients
    if tabs > 1 and not coordinated:
        clients = users * tabs
    rng = np.random.default_rng(seed)
    shown = rng.random(clients)  # all within the same second
    now = shown.copy()
    attempts = np.zeros(clients, dtype=np.int64)
    arrival = np.full(clients, math.inf)
    active = np.ones(clients, dtype=bool)
    probes: list[np.ndarray] = []
    while active.any():
        idx = np.flatnonzero(active)
        t = now[idx] + schedule.next_delay(attempts[idx], now[idx] - shown[idx], rng)
        # The page's give-up timer fires first: no probe at or after give_up_after.
        quitting = t - shown[idx] >= schedule.give_up_after
        active[idx[quitting]] = False
        idx, t = idx[~quitting], t[~quitting]
        probes.append(t)
        attempts[idx] += 1
        now[idx] = t
        back = t >= outage
        arrival[idx[back]] = t[back]
        active[idx[back]] = False
    spread = 0.0
    if tabs > 1 and not coordinated:
        per_user = arrival.reshape(users, tabs)
        whole = per_user[np.isfinite(per_user).all(axis=1)]
        if whole.size:
            spread = float(np.median(whole.max(axis=1) - whole.min(axis=1)))
    if tabs > 1 and coordinated:
        # The prober's success brings every tab of its user back; the tabs of other URLs
        # check theirs once (an upper bound: tabs of the prober's URL need no check).
        found = arrival[np.isfinite(arrival)]
        probes.append(np.repeat(found, tabs - 1))
        arrival = np.repeat(arrival, tabs)
    pages = arrival.size
    lags = np.sort(arrival - outage)
    arrived = np.sort(arrival[np.isfinite(arrival)])
    if arrived.size:
        ends = np.searchsorted(arrived, arrived + 1.0, side="left")
        herd = float((ends - np.arange(arrived.size)).max()) / pages
    else:
        herd = 0.0
    every = np.concatenate(probes) if probes else np.empty(0)
    load = None
    if outage > 60.0:
        during = np.count_nonzero((every >= 60.0) & (every < outage))
        load = during / users / ((outage - 60.0) / 60.0)
    return Outcome(
        schedule=schedule.name,
        outage=outage,
        herd=herd,
        load=load,
        lag_p50=float(np.quantile(lags, 0.5, method="inverted_cdf")),
        lag_p90=float(np.quantile(lags, 0.9, method="inverted_cdf")),
        gave_up=float(np.count_nonzero(~np.isfinite(arrival))) / pages,
        probes=every,
        spread_p50=spread,
    )


def averaged(schedule: Schedule, outage: float, seeds: Sequence[int] = SEEDS) -> Outcome:
    """The mean of each figure over a few seeds (the probe times of the first seed)."""
    runs = [simulate(schedule, outage, seed) for seed in seeds]

    def mean(values: list[float]) -> float:
        return math.inf if any(math.isinf(v) for v in values) else float(np.mean(values))

    loads = [r.load for r in runs]
    return Outcome(
        schedule=schedule.name,
        outage=outage,
        herd=mean([r.herd for r in runs]),
        load=None if loads[0] is None else mean([x for x in loads if x is not None]),
        lag_p50=mean([r.lag_p50 for r in runs]),
        lag_p90=mean([r.lag_p90 for r in runs]),
        gave_up=mean([r.gave_up for r in runs]),
        probes=runs[0].probes,
    )


# -- tabs per user ----------------------------------------------------------------------------


@dataclass
class TabsOutcome:
    """One number of tabs per user, with or without the shared prober."""

    tabs: int
    coordinated: bool
    outcome: Outcome

    @property
    def per_minute(self) -> float:
        """Probes per user per minute after the outage's first minute."""
        return math.nan if self.outcome.load is None else self.outcome.load


def tabs_outcomes(
    policy: RetryPolicy,
    tabs: Sequence[int] = TABS_PER_USER,
    outage: float = TABS_OUTAGE,
    seeds: Sequence[int] = SEEDS[:2],
    users: int = CLIENTS,
) -> list[TabsOutcome]:
    schedule = gracefail_schedule(policy)
    found = []
    for count in tabs:
        for coordinated in (False, True) if count > 1 else (False,):
            runs = [
                simulate(schedule, outage, seed, users, tabs=count, coordinated=coordinated)
                for seed in seeds
            ]
            mean = Outcome(
                schedule=schedule.name,
                outage=outage,
                herd=float(np.mean([r.herd for r in runs])),
                load=float(np.mean([r.load for r in runs if r.load is not None])),
                lag_p50=float(np.mean([r.lag_p50 for r in runs])),
                lag_p90=float(np.mean([r.lag_p90 for r in runs])),
                gave_up=float(np.mean([r.gave_up for r in runs])),
                probes=runs[0].probes,
                spread_p50=float(np.mean([r.spread_p50 for r in runs])),
            )
            found.append(TabsOutcome(count, coordinated, mean))
    return found


def tabs_table(found: Sequence[TabsOutcome]) -> str:
    single = next(t.per_minute for t in found if t.tabs == 1)
    lines = [
        "| tabs per user | shared prober | probes per user per minute | vs one tab "
        "| herd (busiest second, pages) | recovery lag p50 | p90 "
        "| a user's first to last tab back (median) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in found:
        o = t.outcome
        shared = "—" if t.tabs == 1 else ("yes" if t.coordinated else "no")
        lines.append(
            f"| {t.tabs} | {shared} | {t.per_minute:.2f} | {t.per_minute / single:.1f}x "
            f"| {o.herd:.1%} | {_num(o.lag_p50, '.1f', ' s')} | {_num(o.lag_p90, '.1f', ' s')} "
            f"| {o.spread_p50:.1f} s |"
        )
    return "\n".join(lines)


# -- choosing the defaults -----------------------------------------------------------------


@dataclass
class Candidate:
    policy: RetryPolicy
    growth: float
    cap_max: float
    outcomes: list[Outcome]

    @property
    def all_met(self) -> bool:
        return all(o.all_met for o in self.outcomes)

    @property
    def slack(self) -> float:
        """The worst measured/goal ratio over every goal and outage (lower is better)."""
        worst = 0.0
        for o in self.outcomes:
            worst = max(worst, o.herd / GOAL_HERD, o.lag_p50 / GOAL_P50, o.lag_p90 / GOAL_P90)
            if o.load is not None:
                worst = max(worst, o.load / GOAL_LOAD)
        return worst


def grid(
    bases: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0),
    caps: Sequence[float] = (45.0, 50.0, 55.0, 60.0, 62.0, 64.0, 70.0),
    give_ups: Sequence[float] = (600.0, 1800.0),
    retry_after: int = 5,
) -> list[Candidate]:
    out = []
    for base in bases:
        for cap in caps:
            for give_up in give_ups:
                policy = RetryPolicy(
                    retry_after=retry_after, base=base, cap=cap, give_up_after=give_up
                )
                schedule = gracefail_schedule(policy)
                outcomes = [averaged(schedule, t, seeds=SEEDS[:2]) for t in OUTAGES]
                out.append(Candidate(policy, 0.0, 0.0, outcomes))
    out.sort(key=lambda c: (not c.all_met, c.slack))
    return out


# -- report --------------------------------------------------------------------------------


def _dur(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "never"
    return format(value, fmt) + unit


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def outcome_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| schedule | outage | herd (busiest second) | load (probes/client/min after 1 min) "
        "| recovery lag p50 | p90 | gave up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        met = o.met
        lines.append(
            f"| {o.schedule} | {_dur(o.outage)} | {o.herd:.1%}{_mark(met['herd'])} "
            f"| {_num(o.load, '.2f')}{_mark(met['load'])} "
            f"| {_num(o.lag_p50, '.1f', ' s')}{_mark(met['p50'])} "
            f"| {_num(o.lag_p90, '.1f', ' s')}{_mark(met['p90'])} | {o.gave_up:.1%} |"
        )
    return "\n".join(lines)


def candidates_table(cands: Sequence[Candidate], top: int = 8) -> str:
    lines = [
        "| base | cap | give_up_after | all goals | worst measured/goal "
        "| herd 30 s / 2 min / 10 min | load 2 / 10 min | p50 | p90 |",
        "|---:|---:|---:|---|---:|---|---|---|---|",
    ]
    for c in cands[:top]:
        o = c.outcomes
        lines.append(
            f"| {c.policy.base:g} | {c.policy.cap:g} | {c.policy.give_up_after:g} "
            f"| {'met' if c.all_met else 'not met'} | {c.slack:.2f} "
            f"| {' / '.join(f'{x.herd:.1%}' for x in o)} "
            f"| {' / '.join(_num(x.load, '.2f') for x in o if x.load is not None)} "
            f"| {' / '.join(_num(x.lag_p50, '.0f') for x in o)} s "
            f"| {' / '.join(_num(x.lag_p90, '.0f') for x in o)} s |"
        )
    return "\n".join(lines)


def plot(results: dict[float, list[Outcome]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outages = sorted(results)
    fig, axes = plt.subplots(
        len(outages), 1, figsize=(10, 3.0 * len(outages) + 0.8), constrained_layout=True
    )
    styles = [
        {"color": "tab:blue", "linewidth": 1.4, "zorder": 4},
        {"color": "tab:green", "linewidth": 1.4, "zorder": 5},
        {"color": "tab:red", "linewidth": 0.6, "alpha": 0.55, "zorder": 2},
        {"color": "tab:purple", "linewidth": 1.0, "zorder": 3},
    ]
    for ax, outage in zip(np.atleast_1d(axes), outages, strict=True):
        shown = results[outage]
        horizon = max(float(o.probes.max()) for o in shown if o.probes.size) + 30.0
        bins = np.arange(0.0, horizon + 1.0, 1.0)
        for o, style in zip(shown, styles, strict=False):
            counts, _ = np.histogram(o.probes, bins=bins)
            ax.step(bins[:-1], np.maximum(counts, 0.8), where="post", label=o.schedule, **style)
        ax.axvline(outage, color="black", linestyle="--", linewidth=0.8)
        ax.text(outage, 1.3, " recovery", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(0.8, CLIENTS * 2)
        ax.set_xlim(0, horizon)
        ax.set_title(f"{CLIENTS:,} pages shown in the same second; outage of {_dur(outage)}")
        ax.set_ylabel("probes per second")
    np.atleast_1d(axes)[-1].set_xlabel("seconds since the outage began")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=1)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class HerdReport:
    outcomes: list[Outcome]
    extra: list[Outcome]
    candidates: list[Candidate]
    current: RetryPolicy
    recommended: RetryPolicy
    growth: tuple[float, float]
    markdown: str
    tabs: list[TabsOutcome] = field(default_factory=list)


def run(
    plot_path: str | None = None,
    log: Callable[[str], None] = print,
    tabs: Sequence[int] = TABS_PER_USER,
) -> HerdReport:
    current = RetryPolicy()
    log("  herd: trying a grid of RetryPolicy values")
    cands = grid()
    met = [c for c in cands if c.all_met and c.policy.give_up_after == RECOMMENDED_GIVE_UP]
    # The most slack on the tightest goal; on a tie, the numbers closest to today's.
    best = min(
        met or cands,
        key=lambda c: (
            round(c.slack, 2),
            abs(c.policy.base - current.base) + abs(c.policy.cap - current.cap) / 10,
        ),
    )
    recommended = best.policy
    growth = (0.1, 300.0)
    schedules = [
        gracefail_schedule(current, f"gracefail now ({_policy_text(current)})"),
        gracefail_schedule(recommended, f"gracefail recommended ({_policy_text(recommended)})"),
        gracefail_schedule(
            recommended,
            f"option: cap grows as age/10, to 300 s ({_policy_text(recommended)})",
            growth=growth[0],
            cap_max=growth[1],
        ),
        fixed_schedule(),
        chrome_schedule(),
    ]
    log("  herd: simulating the schedules")
    outcomes = [averaged(s, t) for t in OUTAGES for s in schedules]
    extra = [averaged(s, EXTRA_OUTAGE) for s in schedules]
    if plot_path:
        plotted = {schedules[i].name for i in (0, 1, 3, 4)}  # the option matches within 10 min
        by_outage = {
            t: [o for o in outcomes if o.outage == t and o.schedule in plotted] for t in OUTAGES
        }
        plot(by_outage, plot_path)
    log("  herd: tabs per user, with and without the shared prober")
    per_tabs = tabs_outcomes(current, tabs)
    md = markdown(outcomes, extra, cands, current, recommended, plot_path)
    md += (
        f"\n\nTabs per user ({_policy_text(current)}, an outage of {_dur(TABS_OUTAGE)}, "
        f"{CLIENTS:,} users): without the shared prober each tab probes on its own; with it, "
        "one schedule per user, and every tab back when it succeeds (tabs of another URL "
        "after one check each).\n\n" + tabs_table(per_tabs)
    )
    return HerdReport(outcomes, extra, cands, current, recommended, growth, md, per_tabs)


def _policy_text(p: RetryPolicy, give_up: float | None = None) -> str:
    g = p.give_up_after if give_up is None else give_up
    return f"retry_after={p.retry_after}, base={p.base:g}, cap={p.cap:g}, give_up_after={g:g}"


def markdown(
    outcomes: list[Outcome],
    extra: list[Outcome],
    cands: list[Candidate],
    current: RetryPolicy,
    recommended: RetryPolicy,
    plot_path: str | None,
) -> str:
    parts = [
        f"{CLIENTS:,} clients hit the error page within one second at the start of the outage; "
        f"figures are the mean of {len(SEEDS)} seeds. Goals: herd <= {GOAL_HERD:.0%}, load <= "
        f"{GOAL_LOAD:g} probes per client per minute, recovery lag median <= {GOAL_P50:g} s and "
        f"p90 <= {GOAL_P90:g} s (✓ met, ✗ not met). A client that gave up does not come back by "
        'itself: its lag counts as infinite ("never").',
        "",
        outcome_table(outcomes),
        "",
        f"Beyond the goals, an outage of {_dur(EXTRA_OUTAGE)}:",
        "",
        outcome_table(extra),
        "",
        "RetryPolicy values tried (retry_after=5; the best first; 2 seeds each):",
        "",
        candidates_table(cands),
    ]
    if plot_path:
        parts += ["", f"![probes per second]({plot_path.split('/')[-1]})"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", help="write the probes-per-second plot (PNG) here")
    parser.add_argument(
        "--tabs",
        default=",".join(map(str, TABS_PER_USER)),
        help="tabs per user to compare, comma-separated (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    tabs = [int(part) for part in args.tabs.split(",") if part.strip()]
    if not tabs or min(tabs) < 1:
        parser.error(f"--tabs {args.tabs!r}: expected whole numbers of 1 or more, such as 1,4,10")
    if 1 not in tabs:
        tabs.insert(0, 1)  # the comparison is with one tab
    report = run(args.plot, log=lambda s: print(s, file=sys.stderr), tabs=sorted(set(tabs)))
    print(report.markdown)
    print()
    print("recommended:", _policy_text(report.recommended))
    return 0


if __name__ == "__main__":
    sys.exit(main())
