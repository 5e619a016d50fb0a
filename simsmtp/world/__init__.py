"""The world as data: domains, hosts, users, DNS records, policies and fault rules, loaded
from TOML, with a deterministic clock and ids and the pure parts of routing.

>>> from simsmtp.world import World
>>> world = World.seed_world()
>>> world.user("bob@AnotherDomain.org").name
'Bob'
"""

from simsmtp.world.bounce import RecipientFailure, compose_bounce
from simsmtp.world.clock import IdGenerator, VirtualClock
from simsmtp.world.faults import COMMANDS, FaultBook, FaultRule, parse_reply
from simsmtp.world.loader import WorldFileError, validate_world
from simsmtp.world.model import (
    NAMESERVER,
    ROLE_PORTS,
    ROLES,
    Domain,
    Host,
    MXRecord,
    Policy,
    Record,
    User,
    World,
    load_world,
    parse_world,
    seed_world,
)
from simsmtp.world.routing import RetrySchedule, Route, is_null_mx, order_mx, plan_route

__all__ = [
    "COMMANDS",
    "NAMESERVER",
    "ROLES",
    "ROLE_PORTS",
    "Domain",
    "FaultBook",
    "FaultRule",
    "Host",
    "IdGenerator",
    "MXRecord",
    "Policy",
    "RecipientFailure",
    "Record",
    "RetrySchedule",
    "Route",
    "User",
    "VirtualClock",
    "World",
    "WorldFileError",
    "compose_bounce",
    "is_null_mx",
    "load_world",
    "order_mx",
    "parse_reply",
    "parse_world",
    "plan_route",
    "seed_world",
    "validate_world",
]
