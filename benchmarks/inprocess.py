"""In-process overhead of gracefail: the ASGI app, the WSGI app and Django's handler, no sockets.

Each row compares variants of one app (bare, a pass-through middleware, gracefail)
called directly by a tiny driver, in batches. Every round runs each variant once, in
an order rotated every round; a variant's round result is paired with the bare app's
result of the same round. Reported: the median ns per request, the median of the
paired differences (added ns per request) and of the paired ratios, and the
interquartile range of the differences. See benchmarks/README.md for the method.

    python -m benchmarks.inprocess [--quick]

The apps are :mod:`benchmarks.apps`'s; the drivers and the pairing, :mod:`benchmarks.harness`'s.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.apps import (
    BROWSER,
    CHUNKS,
    HEADERS,
    SECRET,
    Upstream,
    django_app,
    flask_app,
    options,
    plain_wsgi_app,
    starlette_app,
)
from benchmarks.harness import (
    AsgiDriver,
    Goal,
    Group,
    Results,
    Runner,
    Settings,
    asgi_scope,
    available,
    calls_per_request,
    compare,
    empty_loop,
    expect,
    fmt_ns,
    goals_table,
    group_table,
    log,
    quick_flag,
    quiet_gracefail_logger,
    stat,
    wsgi_call,
    wsgi_environ,
    wsgi_runner,
)

# The goals (issue 13): what gracefail may add over a status-reading pass-through on
# the happy path, and over an app answering a bare 502 itself on the error path.
PASS_THROUGH_MARGIN = 150
ERROR_ADDED_US = 10
CATCH_LABEL = "a middleware catches it, sends a bare 502"
CATCH_NOTE = (
    "The middle row is the floor of any middleware that serves failures: the upstream "
    "exception raised through the framework and caught, then a bare 502 sent; gracefail's "
    "own work is its distance from that row."
)

# The Starlette variants of the happy-path rows, as the tables name them.
STARLETTE_LABELS = {
    "bare": "bare Starlette",
    "asgi": "pure-ASGI pass-through",
    "base": "BaseHTTPMiddleware pass-through",
    "gracefail": "gracefail",
}


# -- the rows --------------------------------------------------------------------------


def _calls_note(calls: dict[str, float], passthrough: str) -> str:
    """The exact count beside the timings, which on a shared machine jitter by more than
    the margin the goal allows."""
    return (
        f"Python function calls per request (counted, not timed): bare {calls['bare']:g}, "
        f"pass-through {calls[passthrough]:g}, gracefail {calls['gracefail']:g}."
    )


def happy_asgi(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    scope = asgi_scope("/", BROWSER)
    apps = {name: starlette_app(name) for name in ("bare", "asgi", "base", "gracefail")}
    for name, app in apps.items():
        got = driver.call(app, scope)
        expect(got, 200, f"Starlette hello ({name})")
        if got[2] != b"hello":
            raise RuntimeError(f"Starlette hello ({name}) answered {got[2]!r}")
    labels = STARLETTE_LABELS
    runners = {labels[k]: driver.runner(a, scope) for k, a in apps.items()}
    stats = compare(runners, settings)
    calls = {k: calls_per_request(runners[labels[k]]) for k in ("bare", "asgi", "gracefail")}
    res.groups.append(
        Group(
            "Happy path, Starlette hello", "bare Starlette", stats, note=_calls_note(calls, "asgi")
        )
    )
    gf, asgi, base = (stat(stats, labels[k]) for k in ("gracefail", "asgi", "base"))
    res.goals.append(
        Goal(
            "happy path, Starlette hello",
            f"{fmt_ns(gf.added)}/request ({gf.ratio:.3f}x); pure-ASGI pass-through "
            f"{fmt_ns(asgi.added)}, so {fmt_ns(gf.added - asgi.added)} over it; "
            f"Python calls per request over bare: pass-through "
            f"+{calls['asgi'] - calls['bare']:g}, "
            f"gracefail +{calls['gracefail'] - calls['bare']:g}; "
            f"BaseHTTPMiddleware {fmt_ns(base.added)}",
            f"within +{PASS_THROUGH_MARGIN} ns of the status-reading pass-through",
            gf.added - asgi.added <= PASS_THROUGH_MARGIN,
        )
    )


def happy_maintenance(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    """What following planned maintenance adds while it is off: one clock reading and a
    comparison per request (the store is read by a background thread, never here)."""
    scope = asgi_scope("/", BROWSER)
    apps = {name: starlette_app(name) for name in ("bare", "gracefail", "gracefail-maintenance")}
    for name, app in apps.items():
        got = driver.call(app, scope)
        expect(got, 200, f"Starlette hello ({name})")
    labels = {
        "bare": "bare Starlette",
        "gracefail": "gracefail",
        "gracefail-maintenance": "gracefail, maintenance followed (off)",
    }
    stats = compare({labels[k]: driver.runner(a, scope) for k, a in apps.items()}, settings)
    res.groups.append(Group("Happy path, maintenance followed", "bare Starlette", stats))
    gf, followed = stat(stats, labels["gracefail"]), stat(stats, labels["gracefail-maintenance"])
    extra = followed.added - gf.added
    res.goals.append(
        Goal(
            "happy path, maintenance followed (off)",
            f"{fmt_ns(extra)}/request over gracefail without it (gracefail "
            f"{fmt_ns(gf.added)}, followed {fmt_ns(followed.added)} over bare Starlette)",
            "maintenance adds <= 300 ns/request",
            extra <= 300,
        )
    )


def happy_stream(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    scope = asgi_scope("/stream", BROWSER)
    counters = {name: [0] for name in ("bare", "asgi", "base", "gracefail")}
    apps = {name: starlette_app(name, counter=counters[name]) for name in counters}
    first_after: dict[str, int] = {}
    for name, app in apps.items():
        counter = counters[name]
        seen: list[int] = []

        def watch(message: Any, counter: list[int] = counter, seen: list[int] = seen) -> None:
            if message["type"] == "http.response.body" and message.get("body") and not seen:
                seen.append(counter[0])

        counter[0] = 0
        driver.call(app, scope, watch=watch)
        if counter[0] != CHUNKS:
            raise RuntimeError(f"stream ({name}) produced {counter[0]} chunks")
        first_after[name] = seen[0]
    labels = STARLETTE_LABELS
    stats = compare(
        {labels[k]: driver.runner(a, scope) for k, a in apps.items()}, settings, per=CHUNKS
    )
    res.groups.append(
        Group(
            f"Happy path, {CHUNKS:,}-chunk stream (per chunk)",
            "bare Starlette",
            stats,
            unit="chunk",
            note="First body byte reached the server after chunk "
            + ", ".join(f"{first_after[k]} ({labels[k]})" for k in labels)
            + ".",
        )
    )
    gf = stat(stats, labels["gracefail"])
    res.facts["stream_first_byte_after_chunk"] = first_after["gracefail"]
    res.goals.append(
        Goal(
            f"happy path, {CHUNKS:,}-chunk stream",
            f"first byte after chunk {first_after['gracefail']}; {fmt_ns(gf.added)}/chunk "
            f"(pure-ASGI pass-through {fmt_ns(stat(stats, labels['asgi']).added)})",
            "no buffering; added <= 120 ns/chunk",
            first_after["gracefail"] == 1 and gf.added <= 120,
        )
    )


def _wsgi_family(
    res: Results,
    settings: Settings,
    title: str,
    build: Callable[[str], Any],
    passthrough: str,
    label: str,
    module: str,
) -> None:
    if not available(module):
        res.goals.append(
            Goal(
                f"happy path, {title}",
                f"pending: {module} is not there yet",
                f"within +{PASS_THROUGH_MARGIN} ns of the status-reading pass-through",
                None,
            )
        )
        return
    environ = wsgi_environ("/", BROWSER)
    apps = {"bare": build("bare"), passthrough: build(passthrough), "gracefail": build("gracefail")}
    for name, app in apps.items():
        got = wsgi_call(app, environ)
        expect(got, 200, f"{title} hello ({name})")
    labels = {"bare": f"bare {title}", passthrough: label, "gracefail": "gracefail"}
    runners = {labels[k]: wsgi_runner(a, environ) for k, a in apps.items()}
    stats = compare(runners, settings)
    calls = {k: calls_per_request(runners[labels[k]]) for k in apps}
    res.groups.append(
        Group(
            f"Happy path, {title} hello",
            labels["bare"],
            stats,
            note=_calls_note(calls, passthrough),
        )
    )
    gf, through = stat(stats, "gracefail"), stat(stats, label)
    res.goals.append(
        Goal(
            f"happy path, {title}",
            f"{fmt_ns(gf.added)}/request ({gf.ratio:.3f}x); pass-through "
            f"{fmt_ns(through.added)}, so {fmt_ns(gf.added - through.added)} over it; "
            f"Python calls per request over bare: pass-through "
            f"+{calls[passthrough] - calls['bare']:g}, "
            f"gracefail +{calls['gracefail'] - calls['bare']:g}",
            f"within +{PASS_THROUGH_MARGIN} ns of the status-reading pass-through",
            gf.added - through.added <= PASS_THROUGH_MARGIN,
        )
    )


def happy_wsgi(res: Results, settings: Settings) -> None:
    _wsgi_family(
        res, settings, "plain WSGI", plain_wsgi_app, "wsgi", "WSGI pass-through", "gracefail.wsgi"
    )
    _wsgi_family(res, settings, "Flask", flask_app, "wsgi", "WSGI pass-through", "gracefail.flask")
    _wsgi_family(
        res, settings, "Django", django_app, "django", "Django pass-through", "gracefail.django"
    )


def error_asgi(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    bare = starlette_app("bare")
    catch = starlette_app("catch")
    graceful = starlette_app("gracefail")
    goals = dict.fromkeys(("html", "json", "text"), ERROR_ADDED_US)
    names = {"html": "HTML page", "json": "problem+json", "text": "text/plain"}
    types_ = {"html": "text/html", "json": "application/problem+json", "text": "text/plain"}
    for kind, limit in goals.items():
        bare_scope = asgi_scope(f"/bad/{kind}", HEADERS[kind])
        gf_scope = asgi_scope("/fail", HEADERS[kind])
        got = driver.call(graceful, gf_scope)
        expect(got, 502, f"Starlette /fail ({kind})")
        if not got[1].get("content-type", "").startswith(types_[kind]):
            raise RuntimeError(f"gracefail answered {got[1].get('content-type')} to {kind}")
        expect(driver.call(bare, bare_scope), 502, f"Starlette /bad ({kind})")
        stats = compare(
            {
                "app answers a bare 502": driver.runner(bare, bare_scope),
                CATCH_LABEL: driver.runner(catch, gf_scope),
                f"gracefail {names[kind]}": driver.runner(graceful, gf_scope),
            },
            settings,
        )
        res.groups.append(
            Group(
                f"Error path, Starlette, {names[kind]}",
                "app answers a bare 502",
                stats,
                note=CATCH_NOTE if kind == "html" else "",
            )
        )
        floor, gf = stats[1], stats[2]
        res.goals.append(
            Goal(
                f"error path, {names[kind]} (Starlette)",
                f"{gf.ratio:.2f}x ({fmt_ns(gf.added)}/request; {gf.ns / 1000:.1f} us vs "
                f"{stats[0].ns / 1000:.1f} us; raising through the app alone "
                f"{fmt_ns(floor.added)})",
                f"added <= {limit} us/request over a bare 502",
                gf.added <= limit * 1000,
            )
        )


def _find_gracefail(app: Any) -> Any:
    from gracefail.asgi import GracefailMiddleware

    node = app
    for _ in range(20):
        if isinstance(node, GracefailMiddleware):
            return node
        node = getattr(node, "middleware_stack", None) or getattr(node, "app", None)
    raise LookupError("no GracefailMiddleware in the stack")


def _patched(run: Runner, on: Callable[[], Callable[[], None]]) -> Runner:
    """``run`` with something switched off for the batch only (``on()`` returns the undo)."""

    def patched(n: int) -> int:
        undo = on()
        try:
            return run(n)
        finally:
            undo()

    return patched


def error_ablation(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    """Where the HTML error path's time goes: each variant switches one thing off."""
    import gracefail.tokens as tokens

    bare = starlette_app("bare")
    graceful = starlette_app("gracefail")
    bare_scope = asgi_scope("/bad/html", BROWSER)
    scope = asgi_scope("/fail", BROWSER)
    expect(driver.call(graceful, scope), 502, "Starlette /fail")
    engine = _find_gracefail(graceful).engine
    logger = logging.getLogger("gracefail")
    run = driver.runner(graceful, scope)

    def fixed_incident() -> Callable[[], None]:
        original = tokens.new_incident
        tokens.new_incident = lambda: "AbCdEfGhIjKlMnOp"
        return lambda: setattr(tokens, "new_incident", original)

    def no_log() -> Callable[[], None]:
        logger.disabled = True
        return lambda: setattr(logger, "disabled", False)

    def no_put() -> Callable[[], None]:
        engine.pipeline.put = lambda event: None
        return lambda: delattr(engine.pipeline, "put")

    def all_three() -> Callable[[], None]:
        undo = [fixed_incident(), no_log(), no_put()]
        return lambda: [u() for u in undo] and None

    stats = compare(
        {
            "app answers a bare 502": driver.runner(bare, bare_scope),
            "gracefail HTML page": run,
            "... with a fixed incident id (no os.urandom)": _patched(run, fixed_incident),
            "... without the log line": _patched(run, no_log),
            "... without the queue put": _patched(run, no_put),
            "... without all three": _patched(run, all_three),
        },
        settings,
    )
    res.groups.append(
        Group(
            "Error path, Starlette, HTML page: what costs what",
            "app answers a bare 502",
            stats,
            note='Diagnostics, not a product setting: each "..." variant switches one part of '
            "gracefail's error path off for its batches only (the incident id's os.urandom "
            "call, the WARNING line per failure, the event's queue put).",
        )
    )


def error_wsgi(res: Results, settings: Settings) -> None:
    """The HTML page behind the WSGI adapters (rows beyond the issue's, same goal)."""
    family = [
        ("plain WSGI", plain_wsgi_app, "gracefail.wsgi"),
        ("Flask", flask_app, "gracefail.flask"),
        ("Django", django_app, "gracefail.django"),
    ]
    for title, build, module in family:
        if not available(module):
            res.goals.append(
                Goal(
                    f"error path, HTML page ({title})",
                    f"pending: {module} is not there yet",
                    f"added <= {ERROR_ADDED_US} us/request over a bare 502",
                    None,
                )
            )
            continue
        bare, graceful = build("bare"), build("gracefail")
        bad = wsgi_environ("/bad", BROWSER)
        fail = wsgi_environ("/fail", BROWSER)
        expect(wsgi_call(bare, bad), 502, f"{title} /bad")
        got = wsgi_call(graceful, fail)
        expect(got, 502, f"{title} /fail with gracefail")
        if not got[1].get("content-type", "").startswith("text/html") or b"gf-config" not in got[2]:
            raise RuntimeError(f"{title}: gracefail did not serve its page")
        runners = {"app answers a bare 502": wsgi_runner(bare, bad)}
        if title == "plain WSGI":
            catch = build("catch")
            expect(wsgi_call(catch, fail), 502, f"{title} /fail caught")
            runners[CATCH_LABEL] = wsgi_runner(catch, fail)
        runners["gracefail HTML page"] = wsgi_runner(graceful, fail)
        stats = compare(runners, settings)
        note = ""
        if title == "Flask":
            note = (
                "gracefail's error handler for the upstream classes answers before Flask "
                "logs a traceback or renders its 500; the WSGI layer replaces that empty "
                "502 with the page."
            )
        if title == "plain WSGI":
            note = CATCH_NOTE
        res.groups.append(
            Group(f"Error path, {title}, HTML page", "app answers a bare 502", stats, note=note)
        )
        gf = stats[-1]
        # The goal is for plain WSGI (as for Starlette); Flask and Django are
        # reported against the same number.
        res.goals.append(
            Goal(
                f"error path, HTML page ({title})",
                f"{gf.ratio:.2f}x ({fmt_ns(gf.added)}/request; {gf.ns / 1000:.1f} us vs "
                f"{stats[0].ns / 1000:.1f} us)",
                f"added <= {ERROR_ADDED_US} us/request over a bare 502",
                gf.added <= ERROR_ADDED_US * 1000,
            )
        )


def recording(res: Results, settings: Settings) -> None:
    from gracefail.events import ServerEvent
    from gracefail.pipeline import Pipeline

    pipeline = Pipeline([], 1 << 30)
    event = ServerEvent(time.time(), "abc", 502, "connection", "GET", "/", "html")

    def put(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pipeline.put(event)
        elapsed = time.perf_counter_ns() - start
        pipeline.flush()
        return elapsed

    def make_and_put(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            # Built with keywords, as the core builds it.
            pipeline.put(
                ServerEvent(
                    time=time.time(),
                    incident="abc",
                    status=502,
                    cause="connection",
                    method="GET",
                    route="/",
                    reply_format="html",
                )
            )
        elapsed = time.perf_counter_ns() - start
        pipeline.flush()
        return elapsed

    stats = compare(
        {"empty loop": empty_loop, "queue put": put, "ServerEvent + queue put": make_and_put},
        settings,
    )
    pipeline.close()
    res.groups.append(
        Group(
            "Recording a failure",
            "empty loop",
            stats,
            note="The background thread drains the queue meanwhile (no recorders attached).",
        )
    )
    put_stat = stat(stats, "queue put")
    res.goals.append(
        Goal(
            "recording a failure (queue put)",
            f"{put_stat.added:,.0f} ns (with building the event: "
            f"{stat(stats, 'ServerEvent + queue put').added:,.0f} ns)",
            "< 5 us",
            put_stat.added < 5000,
        )
    )


def beacons(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    from gracefail.asgi import GracefailMiddleware
    from gracefail.core import Engine, RequestView
    from gracefail.tokens import TokenSigner

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("beacons never reach the app")

    app = GracefailMiddleware(nothing, **options())
    signer = TokenSigner(SECRET, 3600)
    count = 8192  # more distinct incidents and clients than the guard remembers at once

    def body(name: str) -> bytes:
        token = signer.sign(name, 502)
        data = {"token": token, "kind": "retry", "attempt": 1, "elapsed_ms": 5000, "locale": "en"}
        return json.dumps(data).encode()

    asgi_bodies = [body(f"asgi{i:06d}") for i in range(count)]
    core_bodies = [body(f"core{i:06d}") for i in range(count)]
    headers = {
        "host": "127.0.0.1:8000",
        "origin": "http://127.0.0.1:8000",
        "content-type": "text/plain;charset=UTF-8",
        "sec-fetch-site": "same-origin",
        "content-length": str(len(asgi_bodies[0])),
    }
    scope = asgi_scope("/_gracefail/beacon", headers, method="POST")
    # One beacon per page and client, as in an outage: no client is ever rate limited.
    scopes = [
        {**scope, "client": (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 40000)}
        for i in range(count)
    ]
    got = driver.call(app, scope, body("check"))
    expect(got, 204, "beacon")
    engine: Engine = app.engine
    index = [0]

    def core(n: int) -> int:
        i = index[0]
        start = time.perf_counter_ns()
        for j in range(i, i + n):
            view = RequestView(
                "POST", "/_gracefail/beacon", headers=headers, client_addr=f"c{j % count}"
            )
            engine.accept_beacon(view, core_bodies[j % count])
        elapsed = time.perf_counter_ns() - start
        index[0] = i + n
        return elapsed

    queued = engine.pipeline
    stats = compare(
        {
            "empty loop": empty_loop,
            "core accept_beacon": core,
            "ASGI POST to beacon_path": driver.runner(app, scope, asgi_bodies, scopes),
        },
        settings,
    )
    guard = engine.guard
    refused = guard.duplicates + guard.rate_limited + guard.over_limit
    engine.close()
    note = (
        "Each beacon has its own incident and client, so each one is checked, admitted and "
        "queued"
        + (
            f" (but {refused:,} were refused or duplicates: the figures are too low)."
            if refused
            else f" (the guard refused none; {queued.dropped:,} events dropped by a full queue)."
        )
    )
    res.groups.append(
        Group("Beacon handling (valid beacons, token checked)", "empty loop", stats, note=note)
    )
    asgi = stat(stats, "ASGI POST to beacon_path")
    res.goals.append(
        Goal(
            "beacon handling, in-process",
            f"{asgi.added / 1000:.1f} us through the ASGI middleware "
            f"(core alone {stat(stats, 'core accept_beacon').added / 1000:.1f} us)",
            "< 30 us per beacon incl. token check",
            asgi.added < 30_000 and not refused,
        )
    )


def page_weight(res: Results) -> None:
    from gracefail.classify import Failure
    from gracefail.config import LOCALES, Config
    from gracefail.render import Renderer

    renderer = Renderer(Config(status_page_url="https://status.example.com", **options()))
    token = "19a2b3c4d5e~AbCdEfGhIjKlMnOp~502~" + "A" * 22
    sizes = {}
    served: dict[str, int] = {}
    for status in (502, 504):
        for locale in LOCALES:
            for safe in (True, False):
                args = (
                    "html",
                    Failure(status, "connection"),
                    locale,
                    safe,
                    "AbCdEfGhIjKlMnOp",
                    token,
                    "/checkout/cart?step=2",
                )
                body, _, _ = renderer.body(*args)
                sizes[(status, locale, safe)] = (len(body), len(gzip.compress(body, 6)))
                if (status, locale, safe) == (502, "en", True):
                    # What a browser is sent: the pre-compressed forms, filled per request.
                    for coding in ("br", "gzip"):
                        encoded, _, _, used = renderer.encoded_body(*args, (coding,))
                        served[used or "identity"] = len(encoded)
    en = sizes[(502, "en", True)]
    worst = max(sizes.items(), key=lambda item: item[1][0])
    res.facts["page_bytes"] = en
    sent = ", ".join(f"{coding} {size:,}" for coding, size in served.items())
    res.goals.append(
        Goal(
            "page weight",
            f"{en[0]:,} bytes, gzip -6 of the whole page {en[1]:,} (502, en, GET); as served: "
            f"{sent}; largest {worst[1][0]:,} bytes "
            f"(gzip {worst[1][1]:,}: {worst[0][0]}, {worst[0][1]}, "
            f"{'GET' if worst[0][2] else 'POST'})",
            "<= 16 KB (16,384 bytes) uncompressed",
            worst[1][0] <= 16 * 1024,
        )
    )


def _failure_class_check() -> None:
    from gracefail.classify import Classifier

    if Classifier({}).classify(Upstream("x")) is None:
        raise RuntimeError("gracefail does not treat ConnectionError as an upstream failure")


def run(quick: bool = False, log: Callable[[str], None] = log) -> Results:
    """Every in-process row."""
    settings = Settings(rounds=5, batch_seconds=0.01) if quick else Settings()
    quiet_gracefail_logger()
    _failure_class_check()
    res = Results()
    loop = asyncio.new_event_loop()
    driver = AsgiDriver(loop)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("happy path, Starlette", lambda: happy_asgi(res, settings, driver)),
        ("happy path, maintenance", lambda: happy_maintenance(res, settings, driver)),
        ("happy path, stream", lambda: happy_stream(res, settings, driver)),
        ("happy path, WSGI/Flask/Django", lambda: happy_wsgi(res, settings)),
        ("error path, Starlette", lambda: error_asgi(res, settings, driver)),
        ("error path, what costs what", lambda: error_ablation(res, settings, driver)),
        ("error path, WSGI/Flask/Django", lambda: error_wsgi(res, settings)),
        ("recording", lambda: recording(res, settings)),
        ("beacons", lambda: beacons(res, settings, driver)),
        ("page weight", lambda: page_weight(res)),
    ]
    try:
        for title, step in steps:
            began = time.perf_counter()
            step()
            log(f"  in-process: {title} ({time.perf_counter() - began:.1f} s)")
    finally:
        loop.close()
    return res


def main(argv: list[str] | None = None) -> int:
    res = run(quick_flag(__doc__, "fewer rounds, smaller batches", argv), log=log)
    print(goals_table(res.goals))
    for group in res.groups:
        print()
        print(group_table(group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
