"""The MX editor: change a domain's MX records live and see what a sender does about it.

Every change goes into the world (``world.domains[domain].mx``), which the running DNS
server serves at once. The editor then asks that real DNS server, like ``dig`` (the
answer is shown as dig prints it), and decides the route with
:func:`simsmtp.world.routing.plan_route`, the function the outbound agent itself uses, with
a copy of the agent's random stream (so equal preferences are shuffled exactly as the next
delivery will shuffle them). RFC 5321 §5.1 (MX order, implicit MX), RFC 7505 (null MX).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsmtp.world import cast
from simsmtp.world.model import MXRecord, Record
from simsmtp.world.routing import Route, plan_route

from .base import View, html_widget
from .style import COLORS, HTMLText, callout, escape, panel, pre, span

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.world.model import World

# A host name (RFC 1035 §2.3.1 letters, digits, hyphens; labels of 1-63), or "." for a
# null MX (RFC 7505 §3).
_HOSTNAME = re.compile(r"^(\.|([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)$")
#: Seconds a DNS question of the editor may take before it counts as a failure.
RESOLVER_LIFETIME = 10.0
#: Largest MX preference: a 16-bit unsigned integer (RFC 1035 §3.3.9).
MAX_PREFERENCE = 65535


@dataclass(frozen=True)
class RoutePlan:
    """What a sender decides for a domain, after asking the DNS.

    Attributes:
        domain: the recipient domain.
        sender: the host that delivers (its names count as "myself", RFC 5321 §5.1).
        lookup: the MX lookup's status: "ok", "nodata", "nxdomain" or "tempfail".
        mx: the MX records the DNS answered (a null MX shows as ``MX 0 .``).
        has_address: whether the domain itself has an address (asked only without MX).
        route: the decision of :func:`~simsmtp.world.routing.plan_route`.
        addresses: per target, in order: (exchange, its addresses; empty: does not resolve).
        local: the sender keeps ``domain``'s mail itself (it is the domain's server or one
            of its MX hosts): it stores the message and never routes it (``route`` then
            says so; its MX records are not used).
    """

    domain: str
    sender: str
    lookup: str
    mx: tuple[MXRecord, ...]
    has_address: bool | None
    route: Route
    addresses: tuple[tuple[str, tuple[str, ...]], ...]
    local: bool = False

    @property
    def order(self) -> list[str]:
        """The servers the sender will try, in order (those that resolve; none when it
        stores the mail itself)."""
        return [] if self.local else [name for name, addrs in self.addresses if addrs]

    def _rank(self, index: int) -> str:
        """How target ``index`` came to be tried: its MX preference, or the implicit MX."""
        if self.lookup != "ok" or not self.mx:  # no MX at all: the domain's own address
            return "implicit MX: the domain's own address, RFC 5321 §5.1"
        return f"preference {self.route.targets[index].preference}"

    def text(self) -> str:
        """The plan in words (the same as the widget shows)."""
        if self.lookup == "ok":
            answer = ", ".join(str(r) for r in self.mx)
        else:
            answer = {"nodata": "no MX records (NODATA)", "nxdomain": "no such domain "
                      "(NXDOMAIN)"}.get(self.lookup, "no answer (temporary DNS failure)")
        lines = [f"{self.sender} asks the DNS: MX? {self.domain} -> {answer}"]
        if self.has_address is not None:
            lines.append(f"{self.sender} asks the DNS: A? {self.domain} -> "
                         + ("an address" if self.has_address else "no address"))
        r = self.route
        if self.local:
            lines.append(f"Plan: store it here: {self.sender} keeps the mail of {self.domain} "
                         "itself (no SMTP)")
        elif r.kind == "deliver":
            lines.append("Plan: deliver, trying in this order:")
            for i, (name, addrs) in enumerate(self.addresses, 1):
                where = ", ".join(addrs) if addrs else "does not resolve: skipped"
                lines.append(f"  {i}. {name} ({self._rank(i - 1)}) -> {where}")
        elif r.kind == "bounce":
            lines.append(f"Plan: bounce at once with status {r.status} (nothing is tried)")
        else:
            lines.append(f"Plan: defer with status {r.status}, keep the message, retry later")
        lines.append(f"Why: {r.reason}")
        return "\n".join(lines)

    def html(self) -> str:
        """The plan as HTML (what the widget shows)."""
        r = self.route
        if self.local:
            return callout("ok", escape(r.reason),
                           f"{self.sender} stores the message itself:")
        if r.kind == "deliver":
            items = []
            for i, (name, addrs) in enumerate(self.addresses, 1):
                if addrs:
                    where = span("→ " + ", ".join(addrs), COLORS["muted"], mono=True)
                    then = "first" if i == 1 else "if the ones above cannot take it " \
                        "(no connection, 4xx)"
                else:
                    where = span("does not resolve: skipped", COLORS["fail"])
                    then = ""
                items.append(f"<li>{span(name, bold=True, mono=True)} "
                             f"({escape(self._rank(i - 1))}) "
                             f"{where} <i>{escape(then)}</i></li>")
            body = f"<ol style='margin:2px 0 4px 18px;padding:0;'>{''.join(items)}</ol>"
            box = callout("ok", body, f"{self.sender} will deliver, trying in this order:")
        elif r.kind == "bounce":
            box = callout("fail", escape(r.reason),
                          f"{self.sender} bounces the message at once ({r.status}):")
        else:
            box = callout("warn", escape(r.reason),
                          f"{self.sender} keeps the message and retries ({r.status}):")
        why = f"<div style='font-size:12px;'><b>Why:</b> {escape(r.reason)}</div>" \
            if r.kind == "deliver" else ""
        return box + why

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


def _agent_rng(net: Network, sender: str) -> random.Random:
    agent = net.agents.get(sender)
    source = agent.rng if agent is not None else net.world.ids.rng("mx")
    rng = random.Random()
    rng.setstate(source.getstate())  # a copy: asking must not change the next delivery
    return rng


def default_sender(net: Network, domain: str | None = None) -> str:
    """The world's first host with an outbound agent (mail.example.com in the seed); for a
    ``domain``, the first one that does not keep that domain's mail itself (one that
    routes it by its MX records), if there is one."""
    first = cast.sending_host(net.world, arg="sender")
    if domain is not None:
        for host in net.world.hosts_with_role("outbound"):
            if not net.world.keeps_mail_for(host, domain):
                return host.name
    return first


def sender_route(net: Network, domain: str, sender: str | None = None) -> RoutePlan:
    """Ask the world's DNS about ``domain`` and decide the route as ``sender``'s agent would.

    Args:
        net: the running world.
        domain: the recipient domain.
        sender: the delivering host (default: the first host with an outbound agent that
            does not keep ``domain``'s mail itself).
    """
    from simsmtp.net.dns import lookup_a, lookup_mx, make_resolver

    sender = net.world.host(sender).name if sender else default_sender(net, domain)
    # a patient resolver: a busy machine (a CI runner, a shared JupyterHub) may take more
    # than the usual 2 s to run the world's DNS server thread
    resolver = make_resolver(*net.dns_address, lifetime=RESOLVER_LIFETIME)
    found = lookup_mx(resolver, domain)
    mx = tuple(MXRecord(p, x) for p, x in found.records)
    has_address: bool | None = None
    rng = _agent_rng(net, sender)
    if found.status == "nxdomain":
        route = Route.nxdomain(domain)
    elif found.status == "tempfail":
        route = Route.dns_tempfail(domain)
    elif found.status == "ok" and mx:
        route = plan_route(domain, list(mx), domain_has_address=False, self_names={sender},
                           rng=rng)
    else:  # NODATA: is the domain its own mail server? (implicit MX, RFC 5321 §5.1)
        has_address = bool(lookup_a(resolver, domain).addresses)
        route = plan_route(domain, None, domain_has_address=has_address,
                           self_names={sender}, rng=rng)
    addresses = tuple((t.exchange.rstrip("."),
                       tuple(lookup_a(resolver, t.exchange.rstrip(".")).addresses))
                      for t in route.targets)
    if net.world.keeps_mail_for(sender, domain):
        # Its submission server stores mail for its own domains (and those it is an MX
        # of) at once: the agent never looks the domain up, so no route, no loop.
        route = Route("deliver", domain, (), "",
                      f"{sender} keeps the mail of {domain} itself (its own domain, or an "
                      "MX record names it), so it stores the message in the mailbox at "
                      "once: no MX lookup, no SMTP, no loop.")
        return RoutePlan(domain, sender, found.status, mx, has_address, route, (), True)
    return RoutePlan(domain, sender, found.status, mx, has_address, route, addresses)


class MXRow:
    """One editable MX record: a preference, an exchange and a remove button."""

    def __init__(self, preference: int, exchange: str, options: list[str]) -> None:
        import ipywidgets as w

        self.preference = w.BoundedIntText(value=preference, min=0, max=MAX_PREFERENCE,
                                           description="MX", layout=w.Layout(width="150px"),
                                           style={"description_width": "30px"})
        self.exchange = w.Combobox(value=exchange, options=options, ensure_option=False,
                                   placeholder="host name", layout=w.Layout(width="260px"))
        self.remove = w.Button(description="remove", icon="trash",
                               tooltip="Remove this MX record", layout=w.Layout(width="90px"))
        self.box = w.HBox([self.preference, self.exchange, self.remove])

    @property
    def record(self) -> MXRecord:
        return MXRecord(int(self.preference.value), str(self.exchange.value).strip())


class MXEditor(View):
    """Edit ``domain``'s MX records in a running world; see the dig answer and the route.

    Args:
        net: the running world (``net = world.start()``).
        domain: the domain to edit (default: the domain of the world's first recipient,
            :func:`simsmtp.world.cast.recipient`; ``anotherdomain.org`` in the seed).
        sender: the host whose route is shown (default: the first outbound host that
            does not keep ``domain``'s mail itself).

    Controls (for tests and the curious): ``rows`` (each with ``preference``,
    ``exchange``, ``remove``), ``add_button``, ``clear_button`` (remove all: implicit MX),
    ``null_button`` (null MX), ``reset_button``, ``address_box`` (the domain has an A
    record). Views: ``dig_view`` and ``route_view`` (HTML), ``status`` (HTML); the last
    decision is ``plan`` (a :class:`RoutePlan`).
    """

    def __init__(self, net: Network, domain: str | None = None, *,
                 sender: str | None = None) -> None:
        import ipywidgets as w

        self.net = net
        self.world = net.world
        if domain is None:  # the domain of the world's first recipient
            domain = cast.recipient(self.world, _first_sender(self.world),
                                    arg="domain").rpartition("@")[2]
        self.domain = self.world.domain(domain)
        self.sender = self.world.host(sender).name if sender else default_sender(
            net, self.domain.name)
        self._original = (list(self.domain.mx), self.domain.null_mx, list(self.world.records))
        self.options = sorted(h.name for h in self.world.hosts.values())
        self.rows: list[MXRow] = []
        self.plan: RoutePlan | None = None
        self._quiet = False

        button = w.Layout(width="auto", min_width="max-content")
        self.add_button = w.Button(description="Add backup", icon="plus", layout=button,
                                   tooltip="Add an MX record with a higher preference")
        self.clear_button = w.Button(description="Remove all", icon="eraser", layout=button,
                                     tooltip="Remove every MX record (implicit MX)")
        self.null_button = w.Button(description="Null MX", icon="ban", layout=button,
                                    tooltip="Publish MX 0 . : this domain accepts no mail")
        self.reset_button = w.Button(description="Reset", icon="undo", layout=button,
                                     tooltip="Back to the records the world started with")
        self.address_box = w.Checkbox(value=self._has_apex_address(), indent=False,
                                      description=f"{self.domain.name} itself has an "
                                                  "address (A record)",
                                      layout=w.Layout(width="auto"))
        self.status = html_widget()
        self.rows_box = w.VBox()
        self.dig_view = html_widget()
        self.route_view = html_widget()
        self.add_button.on_click(self.guarded(lambda _: self.add_backup()))
        self.clear_button.on_click(self.guarded(lambda _: self.remove_all()))
        self.null_button.on_click(self.guarded(lambda _: self.null_mx()))
        self.reset_button.on_click(self.guarded(lambda _: self.reset()))
        self.address_box.observe(self.guarded(lambda _: self._set_address()), names="value")
        title = html_widget(f"<b>MX records of {escape(self.domain.name)}</b> "
                       f"<span style='color:{COLORS['muted']}'>(lower preference is tried first; "
                       "changes go live in the world's DNS)</span>")
        left = w.VBox([title, self.rows_box,
                       w.HBox([self.add_button, self.clear_button, self.null_button,
                               self.reset_button], layout=w.Layout(flex_flow="row wrap")),
                       self.address_box, self.status],
                      layout=w.Layout(width="52%"))
        right = w.VBox([self.route_view], layout=w.Layout(width="48%"))
        self.widget = w.VBox([w.HBox([left, right]), self.dig_view])
        self._load_rows()
        self.refresh()

    def __repr__(self) -> str:
        return f"MXEditor(domain={self.domain.name!r}, sender={self.sender!r})"

    # -- the rows -------------------------------------------------------------------------
    def _load_rows(self) -> None:
        self.rows = [self._make_row(r.preference, r.exchange) for r in self.domain.mx]
        self.rows_box.children = [r.box for r in self.rows]

    def _make_row(self, preference: int, exchange: str) -> MXRow:
        row = MXRow(preference, exchange, self.options)
        row.preference.observe(self.guarded(lambda _: self.apply()), names="value")
        row.exchange.observe(self.guarded(lambda _: self.apply()), names="value")
        row.remove.on_click(self.guarded(lambda _: self._remove(row)))
        return row

    def _remove(self, row: MXRow) -> None:
        self.rows = [r for r in self.rows if r is not row]
        self.rows_box.children = [r.box for r in self.rows]
        self.apply()

    # -- actions ------------------------------------------------------------------------
    def add_backup(self, exchange: str | None = None, preference: int | None = None) -> None:
        """Add a record: by default preference (highest + 10), an mx host of this domain
        not listed yet, else ``backup.<domain>`` (a name that does not resolve: another
        domain's server would refuse to relay the mail)."""
        listed = {r.exchange.value.strip().lower().rstrip(".") for r in self.rows}
        if exchange is None:
            mx_hosts = [h.name for h in self.world.hosts_with_role("mx")
                        if h.domain == self.domain.name]
            exchange = next((h for h in mx_hosts if h not in listed),
                            f"backup.{self.domain.name}")
        if preference is None:
            preference = max([int(r.preference.value) for r in self.rows] or [0]) + 10
        self.rows.append(self._make_row(preference, exchange))
        self.rows_box.children = [r.box for r in self.rows]
        self.apply()

    def remove_all(self) -> None:
        """Remove every MX record: the domain gets an implicit MX if it has an address."""
        self.rows = []
        self.rows_box.children = []
        self.apply()

    def null_mx(self) -> None:
        """Publish a null MX (``MX 0 .``, RFC 7505): the domain accepts no mail."""
        self.rows = []
        self.rows_box.children = []
        self.domain.mx = []
        self.domain.null_mx = True
        self.refresh("A null MX (MX 0 .) is published: the domain says it accepts no mail.")

    def reset(self) -> None:
        """Put back the records the editor started with."""
        mx, null, records = self._original
        self.domain.mx = list(mx)
        self.domain.null_mx = null
        self.world.records[:] = records
        self._quiet = True
        try:
            self.address_box.value = self._has_apex_address()
        finally:
            self._quiet = False
        self._load_rows()
        self.refresh("Back to the records the world started with.")

    def apply(self) -> None:
        """Write the rows into the world (the DNS serves them at once) and refresh."""
        records = []
        for row in self.rows:
            exchange = str(row.exchange.value).strip()
            if not _HOSTNAME.match(exchange):
                self.status.value = callout("fail", f"{escape(exchange)} is not a host "
                                            "name; nothing changed.", "Not applied:")
                return
            records.append(MXRecord(int(row.preference.value), exchange.rstrip(".") or "."))
        self.domain.mx = records
        self.domain.null_mx = False
        self.refresh()

    # -- the apex A record (implicit MX) --------------------------------------------------
    def _apex_ip(self) -> str | None:
        mx = self._original[0]
        for name in [r.exchange for r in mx] + [h.name for h in self.world.hosts.values()
                                                if h.domain == self.domain.name]:
            info = self.net.hosts.get(name.lower().rstrip("."))
            if info is not None:
                return info.ip
        return None

    def _has_apex_address(self) -> bool:
        return any(r.name.lower() == self.domain.name and r.rtype in ("A", "AAAA")
                   for r in self.world.records)

    def _set_address(self) -> None:
        if self._quiet:
            return
        name = self.domain.name
        self.world.records[:] = [r for r in self.world.records
                                 if not (r.name.lower() == name and r.rtype == "A")]
        if self.address_box.value:
            ip = self._apex_ip()
            if ip is None:
                self.status.value = callout("fail", "no host of this domain has an address",
                                            "Not applied:")
                return
            self.world.records.append(Record(name, "A", ip))
        self.refresh()

    # -- what the learner sees ------------------------------------------------------------
    def refresh(self, message: str = "") -> RoutePlan:
        """Ask the DNS again, decide the route again, and redraw."""
        self.plan = sender_route(self.net, self.domain.name, self.sender)
        self.route_view.value = panel(self.plan.html(),
                                      f"What {self.sender} does with mail for "
                                      f"{self.domain.name}")
        dig = self.net.dig(self.domain.name, "MX")
        self.dig_view.value = panel(str(pre(dig, max_height="22em")),
                                    f"dig MX {self.domain.name} (asked just now, "
                                    "from the world's DNS server)")
        if not self.rows and not self.domain.null_mx and not message:
            message = ("No MX records: a sender falls back to the domain's own address "
                       "(implicit MX, RFC 5321 §5.1), if it has one.")
        self.status.value = callout("note", escape(message)) if message else ""
        return self.plan

    @property
    def records(self) -> list[MXRecord]:
        """The MX records the world publishes now."""
        return self.domain.mx_records()


def _first_sender(world: World) -> str | None:
    try:
        return cast.sender(world)
    except cast.MissingPart:
        return None


def route_text(net: Network, domain: str, sender: str | None = None) -> HTMLText:
    """The sender's plan for ``domain`` as HTML in a notebook, as text elsewhere."""
    plan = sender_route(net, domain, sender)
    return HTMLText(plan.html(), plan.text())


__all__ = ["MAX_PREFERENCE", "MXEditor", "MXRow", "RoutePlan", "default_sender",
           "route_text", "sender_route"]
